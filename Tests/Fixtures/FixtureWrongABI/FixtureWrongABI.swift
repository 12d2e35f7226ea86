// Test fixture: a library whose descriptor claims a future ABI version. The host must
// refuse it from the header alone, without reading further or calling anything.
import CKizunaPluginABI

nonisolated(unsafe) let descriptor: UnsafeMutablePointer<kizuna_plugin_descriptor> = {
    let pointer = UnsafeMutablePointer<kizuna_plugin_descriptor>.allocate(capacity: 1)
    pointer.initialize(to: kizuna_plugin_descriptor(
        magic: KIZUNA_PLUGIN_MAGIC, abi_version: 99, sdk_version: nil, compiler_major: 0, compiler_minor: 0,
        compiler_patch: 0, kind: 1, sdk_identity: nil, make_plugin: nil, factory_context: nil))
    return pointer
}()

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { UnsafeRawPointer(descriptor) }
