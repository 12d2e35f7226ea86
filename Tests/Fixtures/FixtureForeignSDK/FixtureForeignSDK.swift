// Test fixture: a descriptor reporting an SDK identity that is not the host's, as a plugin with its own SDK copy does.
// Only the descriptor is forged; the host must refuse it before calling anything.
import CKizunaPluginABI
import KizunaSDK

let oldSDK: StaticString = "0.0.1"
let currentSDK = PluginBuildFacts.sdkVersion

nonisolated(unsafe) let descriptor: UnsafeMutablePointer<kizuna_plugin_descriptor> = {
    let pointer = UnsafeMutablePointer<kizuna_plugin_descriptor>.allocate(capacity: 1)
    pointer.initialize(to: kizuna_plugin_descriptor(
        magic: KIZUNA_PLUGIN_MAGIC, abi_version: KIZUNA_PLUGIN_ABI_VERSION, sdk_version: UnsafeRawPointer(currentSDK.utf8Start).assumingMemoryBound(to: CChar.self), compiler_major: PluginBuildFacts.compilerVersion.major, compiler_minor: PluginBuildFacts.compilerVersion.minor, compiler_patch: PluginBuildFacts.compilerVersion.patch,
        kind: PluginKind.discovery.abiValue, sdk_identity: UnsafeRawPointer(bitPattern: 0x1000), make_plugin: nil, factory_context: nil))
    return pointer
}()

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { UnsafeRawPointer(descriptor) }
