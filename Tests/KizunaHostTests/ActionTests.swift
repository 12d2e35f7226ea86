import Foundation
import KizunaHost
import KizunaSDK
import Testing

/// Declarations for the actions the discovery fixture exports.
let fixtureActions = """
    [actions.add-int8]
    symbol = "fixture_add_int8"
    parameters = ["int8", "int8"]
    returns = "int8"
    [actions.add-int16]
    symbol = "fixture_add_int16"
    parameters = ["int16", "int16"]
    returns = "int16"
    [actions.add-int32]
    symbol = "fixture_add_int32"
    parameters = ["int32", "int32"]
    returns = "int32"
    [actions.add-int64]
    symbol = "fixture_add_int64"
    parameters = ["int64", "int64"]
    returns = "int64"
    [actions.add-uint8]
    symbol = "fixture_add_uint8"
    parameters = ["uint8", "uint8"]
    returns = "uint8"
    [actions.add-uint16]
    symbol = "fixture_add_uint16"
    parameters = ["uint16", "uint16"]
    returns = "uint16"
    [actions.add-uint32]
    symbol = "fixture_add_uint32"
    parameters = ["uint32", "uint32"]
    returns = "uint32"
    [actions.add-uint64]
    symbol = "fixture_add_uint64"
    parameters = ["uint64", "uint64"]
    returns = "uint64"
    [actions.scale]
    symbol = "fixture_scale"
    parameters = ["double", "double"]
    returns = "double"
    [actions.not]
    symbol = "fixture_not"
    parameters = ["bool"]
    returns = "bool"
    [actions.greet]
    symbol = "fixture_greet"
    parameters = ["string"]
    returns = "string"
    description = "Says hello"
    [actions.describe]
    symbol = "fixture_describe"
    parameters = ["int8", "uint16", "int64", "double", "bool", "string"]
    returns = "string"
    [actions.touch]
    symbol = "fixture_touch"
    [actions.touches]
    symbol = "fixture_touches"
    returns = "uint64"
    [actions.wait]
    symbol = "fixture_wait"
    [actions.release]
    symbol = "fixture_release"
    [actions.rearm]
    symbol = "fixture_rearm"
    [actions.missing]
    symbol = "fixture_not_exported"
    returns = "int32"
    """

/// Serialized: the fixture library is loaded once per process, so its touch counter is
/// process-global state that parallel test cases would move under each other.
@Suite(.serialized, .timeLimit(.minutes(1))) struct ActionTests {
    func hostWithActions() async throws -> KizunaHost {
        let (host, directory) = try makeHost()
        Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"), extra: fixtureActions)
        _ = try await host.load("finder")
        return host
    }

    @Test(arguments: [
        ("add-int8", ["-128", "127"], "-1"), ("add-int8", ["100", "27"], "127"),
        ("add-int16", ["-32768", "32767"], "-1"), ("add-int32", ["2147483647", "-2147483648"], "-1"),
        ("add-int64", ["9223372036854775807", "-9223372036854775808"], "-1"),
        ("add-uint8", ["200", "55"], "255"), ("add-uint16", ["65535", "0"], "65535"),
        ("add-uint32", ["4294967295", "0"], "4294967295"), ("add-uint64", ["18446744073709551615", "0"], "18446744073709551615"),
        ("scale", ["1.5", "-4"], "-6.0"), ("not", ["true"], "false"), ("not", ["0"], "true"),
        ("greet", ["Kizuna 絆"], "hello, Kizuna 絆"),
        ("describe", ["-7", "65535", "-9000000000", "2.25", "yes", "mixed args"], "-7 65535 -9000000000 2.25 true mixed args"),
    ])
    func everyDeclaredTypeIsCalledThroughLibffi(action: String, arguments: [String], expected: String) async throws {
        let host = try await hostWithActions()
        #expect(try await host.call("finder", action: action, arguments: arguments) == expected)
        await host.shutdown()
    }

    @Test func aVoidActionRunsAndItsEffectIsVisible() async throws {
        let host = try await hostWithActions()
        let before = UInt64(try await host.call("finder", action: "touches", arguments: []))!
        #expect(try await host.call("finder", action: "touch", arguments: []) == "")
        #expect(UInt64(try await host.call("finder", action: "touches", arguments: [])) == before + 1)
        await host.shutdown()
    }

    @Test func actionsAreListedWithTheirSignatures() async throws {
        let host = try await hostWithActions()
        let actions = try await host.actions("finder")
        #expect(actions.count == 18)
        let greet = try #require(actions.first { $0.name == "greet" })
        #expect(greet.signature == "const char * fixture_greet(const char *)")
        #expect(greet.description == "Says hello")
        #expect(actions.first { $0.name == "touch" }?.signature == "void fixture_touch(void)")
        await host.shutdown()
    }

    /// Each refusal happens before anything is called: touch's counter does not move.
    @Test(arguments: [
        ("touch", ["1"], PluginLoadError.Code.actionArguments, "action 'touch' takes no arguments, but 1 were given"),
        ("add-int8", ["1"], .actionArguments, "action 'add-int8' takes 2 (int8, int8), but 1 were given"),
        ("add-int8", ["128", "0"], .actionArguments, "argument 1 of action 'add-int8' is '128', which does not fit in int8 (-128 to 127)"),
        ("add-uint8", ["1", "-1"], .actionArguments, "argument 2 of action 'add-uint8' is '-1', not a whole number from 0; give a uint8 from 0 to 255"),
        ("add-uint16", ["65536", "1"], .actionArguments, "which does not fit in uint16 (0 to 65535)"),
        ("add-int64", ["9223372036854775808", "0"], .actionArguments, "not a whole number; give a int64"),
        ("scale", ["one", "2"], .actionArguments, "argument 1 of action 'scale' is 'one', not a number"),
        ("not", ["maybe"], .actionArguments, "not a boolean; give true or false"),
        ("rescan", [], .actionUnknown, "declares no action 'rescan'; its actions are add-int16"),
        ("missing", [], .actionSymbolMissing, "action 'missing' names symbol 'fixture_not_exported', which the library does not export; export `int32_t fixture_not_exported(void)` with @_cdecl(\"fixture_not_exported\")"),
    ])
    func badCallsAreRefusedBeforeAnythingIsCalled(action: String, arguments: [String], code: PluginLoadError.Code, message: String) async throws {
        let host = try await hostWithActions()
        let before = try await host.call("finder", action: "touches", arguments: [])
        let error = await #expect(throws: PluginLoadError.self) { try await host.call("finder", action: action, arguments: arguments) }
        #expect(error?.code == code)
        #expect(error?.message.contains(message) == true, "got: \(error?.description ?? "no error")")
        #expect(try await host.call("finder", action: "touches", arguments: []) == before)
        await host.shutdown()
    }

    @Test func aCallRunsAsATaskOfThePlugin() async throws {
        let host = try await hostWithActions()
        _ = try await host.call("finder", action: "rearm", arguments: [])
        let idle = try await host.info("finder").tasks
        let call = Task { try await host.call("finder", action: "wait", arguments: []) }
        // While the action runs, it is one more task of the plugin.
        while try await host.info("finder").tasks == idle, !Task.isCancelled { await Task.yield() }
        #expect(try await host.info("finder").tasks == idle + 1)
        _ = try await host.call("finder", action: "release", arguments: [])
        #expect(try await call.value == "")
        await host.shutdown()
    }

    @Test func unresolvedActionsAreFoundWithoutCallingAnything() throws {
        let manifest = try Fixtures.manifest("FixtureDiscovery", name: "finder", kind: .discovery, extra: fixtureActions)
        let library = try PluginLibrary.open(manifest)
        #expect(library.unresolvedActions(of: manifest).map(\.name) == ["missing"])
    }

    @Test(arguments: [
        ("[actions.go]\nsymbol = \"go\"\nparameters = [\"float\"]\n", "actions.go.parameters", "parameter types are int8, int16"),
        ("[actions.go]\nsymbol = \"go\"\nparameters = [\"void\"]\n", "actions.go.parameters", "parameter types are"),
        ("[actions.go]\nsymbol = \"go\"\nreturns = \"char\"\n", "actions.go.returns", "'char' is not a result type"),
        ("[actions.go]\nsymbol = \"go-now\"\n", "actions.go.symbol", "'go-now' is not a C identifier"),
        ("[actions.go]\nparameters = []\n", "actions.go.symbol", "is missing or not a string"),
        ("[actions.go]\nsymbol = \"go\"\ntimeout = 3\n", "actions.go.timeout", "is not an action key"),
        ("[actions.Go]\nsymbol = \"go\"\n", "actions.Go", "is not a valid action name"),
    ])
    func badActionDeclarationsAreRefused(declaration: String, field: String, message: String) {
        let text = "schema = 1\nname = \"x\"\nversion = \"1.0.0\"\nkind = \"discovery\"\nlibrary = \"l.so\"\n" + declaration
        let error = #expect(throws: ManifestError.self) { try PluginManifest(parsing: text, path: "x.toml") }
        #expect(error?.field == field, "\(error?.description ?? "")")
        #expect(error?.message.contains(message) == true, "\(error?.description ?? "")")
        #expect(error?.line != nil)
    }
}
