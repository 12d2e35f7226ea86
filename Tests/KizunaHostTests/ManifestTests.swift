import KizunaHost
import KizunaSDK
import Testing

@Suite struct ManifestTests {
    static let valid = """
        # A transport plugin.
        schema = 1
        name = "tcp-transport"
        version = "1.2.0"
        kind = "transport"
        library = "libTCPTransport.so"
        sha256 = "\(String(repeating: "ab", count: 32))"
        description = 'TCP on "SwiftNIO"'
        license = "Apache-2.0"
        authors = [
            "Kizuna team",  # trailing comma and comments are fine
        ]
        provides = ["transport"]

        [settings]
        port = 0x1F90
        interface = "127.0.0.1"
        verbose = true
        ratio = 0.5
        peers = ["a", "b"]
        limits = { send = 1_000, receive = 2_000 }
        banner = \"\"\"
        hello
        world\"\"\"
        [settings.tls]
        enabled = false
        """

    @Test func aValidManifestParses() throws {
        let manifest = try PluginManifest(parsing: Self.valid, path: "/plugins/tcp.toml")
        #expect(manifest.name == "tcp-transport")
        #expect(manifest.version == "1.2.0")
        #expect(manifest.kind == .transport)
        #expect(manifest.libraryPath == "/plugins/libTCPTransport.so")
        #expect(manifest.sha256 == String(repeating: "ab", count: 32))
        #expect(manifest.description == "TCP on \"SwiftNIO\"")
        #expect(manifest.authors == ["Kizuna team"])
        #expect(manifest.provides == ["transport"])
        #expect(manifest.requires == [])
        #expect(manifest.settings.integer("port") == 8080)
        #expect(manifest.settings.string("interface") == "127.0.0.1")
        #expect(manifest.settings.bool("verbose") == true)
        #expect(manifest.settings.float("ratio") == 0.5)
        #expect(manifest.settings.values["peers"] == .array([.string("a"), .string("b")]))
        #expect(manifest.settings.values["limits"] == .table(["send": .integer(1000), "receive": .integer(2000)]))
        #expect(manifest.settings.string("banner") == "hello\nworld")
        #expect(manifest.settings.values["tls"] == .table(["enabled": .bool(false)]))
    }

    @Test func aFileTransferPluginRequiresATransport() throws {
        let manifest = try PluginManifest(parsing: """
            schema = 1
            name = "files"
            version = "0.1.0"
            kind = "file-transfer"
            library = "libFiles.so"
            """, path: "m.toml")
        #expect(manifest.requiredKinds == [.transport])
    }

    /// Each broken manifest, with the line and field the error must name and a piece of its message.
    static let broken: [(text: String, line: Int?, field: String?, message: String)] = [
        ("schema = 1\nname = \"x\"\nversion = \"1.0.0\"\nkind = \"discovery\"\nlibrary = \"l.so\"\ncolour = \"red\"\n", 6, "colour", "is not a manifest key"),
        ("schema = 1\nnmae = \"x\"\n", 2, "nmae", "did you mean 'name'?"),
        ("name = \"x\"\n", nil, "schema", "is missing; add 'schema = 1'"),
        ("schema = 2\n", 1, "schema", "is 2: this manifest is for a newer Kizuna, and this host reads schema 1; upgrade Kizuna"),
        ("schema = 2\nname = \"x\"\nnew-key = 1\n", 1, "schema", "this manifest is for a newer Kizuna"),
        ("schema = 0\n", 1, "schema", "is 0, but this host reads schema 1"),
        ("schema = \"1\"\n", 1, "schema", "must be an integer, not a string"),
        ("schema = 1\nversion = \"1.0.0\"\n", nil, "name", "is missing"),
        ("schema = 1\nname = \"Bad_Name\"\n", 2, "name", "is not a valid plugin name"),
        ("schema = 1\nname = 42\n", 2, "name", "must be a string, not an integer"),
        ("schema = 1\nname = \"x\"\nversion = \"1.0\"\n", 3, "version", "is not a semantic version"),
        ("schema = 1\nname = \"x\"\nversion = \"1.0.0\"\nkind = \"discvery\"\n", 4, "kind", "'discvery' is not a plugin kind; use one of discovery, transport, file-transfer, streaming"),
        ("schema = 1\nname = \"x\"\nversion = \"1.0.0\"\nkind = \"discovery\"\n", nil, "library", "is missing"),
        ("schema = 1\nname = \"x\"\nversion = \"1.0.0\"\nkind = \"discovery\"\nlibrary = \"l.so\"\nsha256 = \"abc\"\n", 6, "sha256", "is not a SHA-256"),
        ("schema = 1\nname = \"x\"\nversion = \"1.0.0\"\nkind = \"discovery\"\nlibrary = \"l.so\"\nauthors = \"me\"\n", 6, "authors", "must be an array of strings, not a string"),
        ("schema = 1\nname = \"x\"\nversion = \"1.0.0\"\nkind = \"discovery\"\nlibrary = \"l.so\"\nprovides = [1]\n", 6, "provides", "holds an integer"),
        ("schema = 1\nname = \"x\"\nversion = \"1.0.0\"\nkind = \"streaming\"\nlibrary = \"l.so\"\nrequires = [\"tranport\"]\n", 6, "requires", "'tranport' is not a plugin kind"),
        ("schema = 1\nname = \"x\"\nversion = \"1.0.0\"\nkind = \"discovery\"\nlibrary = \"l.so\"\nsettings = 3\n", 6, "settings", "must be a table, not an integer"),
        // Syntax errors carry the line.
        ("schema = 1\nname = \"x\n", 2, nil, "a string is not closed on its line"),
        ("schema = 1\nname = x\n", 2, nil, "strings need quotes"),
        ("schema = 1\nschema = 1\n", 2, nil, "key 'schema' is defined twice"),
        ("schema = 1\n[settings]\n[settings]\n", 3, nil, "table [settings] is defined twice"),
        ("schema = 1\n[[settings]]\n", 2, nil, "arrays of tables ([[...]]) are not supported"),
        ("schema = 1\nwhen = 2024-01-01\n", 2, nil, "dates are not supported"),
        ("schema = 1\nname = \"x\" extra\n", 2, nil, "put one key = value per line"),
        ("schema = 1\nlist = [1, 2\n", 3, nil, "expected ',' or ']' in an array"),
        ("schema = 1\nname = \"bad \\q escape\"\n", 2, nil, "'\\q' is not a TOML escape"),
        ("schema = 99999999999999999999\n", 1, nil, "does not fit in a 64-bit integer"),
        ("schema = 01\n", 1, nil, "leading zero"),
        ("schema =\n", 1, nil, "a key has no value"),
        // What TOML 1.0 refuses, refused with the fix.
        ("schema = 1\nname = \"a\u{01}b\"\n", 2, nil, "a string contains control character U+0001; write it as an escape such as \\u0001"),
        ("schema = 1\nname = 'a\u{7F}b'\n", 2, nil, "a literal string contains control character U+007F"),
        ("schema = 1 # a \u{00} here\n", 1, nil, "a comment contains control character U+0000"),
        ("schema = 1\rname = \"x\"\r", 1, nil, "a carriage return (CR) not followed by a line feed"),
        ("schema = 1\nx = .5\n", 2, nil, "is not a TOML float"),
        ("schema = 1\nx = 1.\n", 2, nil, "is not a TOML float"),
        ("schema = 1\nx = 00.5\n", 2, nil, "is not a TOML float"),
        ("schema = 1\nx = 1e\n", 2, nil, "is not a TOML float"),
        ("schema = 1\nx = 1__0\n", 2, nil, "strings need quotes"),
        ("schema = 1\nx = 0x-10\n", 2, nil, "is not a base-16 integer"),
        ("schema = 1\nx = 0x_ff\n", 2, nil, "is not a base-16 integer"),
        ("schema = 1\n[settings]\na = { b = 1 }\n[settings.a.c]\n", 4, nil, "an inline table or array cannot be extended later"),
        ("schema = 1\n[settings]\na = { b = 1 }\na.c = 2\n", 4, nil, "an inline table cannot be extended later"),
        ("schema = 1\n[settings]\na.b.c = 1\n[settings.a.b]\n", 4, nil, "table [settings.a.b] was already defined by dotted keys"),
        ("schema = 1\n[settings.a]\n[settings]\na.b = 1\n", 4, nil, "adds to table 'settings.a', which is already defined on line 2"),
        ("schema = 1\nx = { a = 1, }\n", 2, nil, "remove the last comma"),
        ("schema = 1\nx = \"\"\"a\\  b\"\"\"\n", 2, nil, "a backslash followed by spaces must end its line"),
        ("schema = 1\nx = \"\\u12\"\n", 2, nil, "\\u needs exactly 4 hex digits"),
        ("\u{FEFF}schema = 1\n", 1, nil, "byte-order mark"),
        ("schema = 1\nname = \"x\"\nname = \"y\"\n", 3, nil, "key 'name' is defined twice (first on line 2); keep one of them"),
        // SemVer 2.0.0 exactly.
        ("schema = 1\nname = \"x\"\nversion = \"1.0.0-\"\n", 3, "version", "is not a semantic version"),
        ("schema = 1\nname = \"x\"\nversion = \"1.0.0-beta_1\"\n", 3, "version", "is not a semantic version"),
        ("schema = 1\nname = \"x\"\nversion = \"1.0.0-01\"\n", 3, "version", "is not a semantic version"),
        ("schema = 1\nname = \"x\"\nversion = \"1.0.0+\"\n", 3, "version", "is not a semantic version"),
        ("schema = 1\nname = \"x\"\nversion = \"\u{0661}.0.0\"\n", 3, "version", "is not a semantic version"),
        ("schema = 1\nname = \"x\"\nversion = \"01.0.0\"\n", 3, "version", "is not a semantic version"),
    ]

    /// What TOML 1.0 and SemVer 2.0.0 allow, and the manifest subset reads.
    @Test(arguments: [
        ("x = \"\"\"x\"\"\"\"\"", SettingValue.string("x\"\"")),
        ("x = '''a''''", .string("a'")),
        ("x = 1e5", .float(100_000)),
        ("x = -0.0", .float(-0.0)),
        ("x = +1_000", .integer(1000)),
        ("x = 0o17", .integer(15)),
        ("x = 0b101", .integer(5)),
        ("x = -inf", .float(-.infinity)),
        ("x = \"\"\"\\\n   a\"\"\"", .string("a")),
        ("x = [1, 'a', [2.5]]", .array([.integer(1), .string("a"), .array([.float(2.5)])])),
        ("x = { a.b = 1, a.c = 2 }", .table(["a": .table(["b": .integer(1), "c": .integer(2)])])),
        ("x = 'tab\there'", .string("tab\there")),
    ])
    func validTOMLIsRead(line: String, value: SettingValue) throws {
        let text = "schema = 1\nname = \"x\"\nversion = \"1.0.0-rc.1+build.05\"\nkind = \"discovery\"\nlibrary = \"l.so\"\r\n[settings]\n\(line)\n"
        let manifest = try PluginManifest(parsing: text, path: "m.toml")
        #expect(manifest.settings.values["x"] == value)
        #expect(manifest.version == "1.0.0-rc.1+build.05")
    }

    @Test func dottedKeysOfOneSectionBuildOneTableAndSubTablesMayFollow() throws {
        let text = "schema = 1\nname = \"x\"\nversion = \"1.0.0\"\nkind = \"discovery\"\nlibrary = \"l.so\"\n[settings]\na.b = 1\na.c = 2\n[settings.a.d]\ne = 3\n"
        let manifest = try PluginManifest(parsing: text, path: "m.toml")
        #expect(manifest.settings.values["a"] == .table(["b": .integer(1), "c": .integer(2), "d": .table(["e": .integer(3)])]))
    }

    @Test(arguments: broken)
    func brokenManifestsNameTheLineFieldAndFix(case broken: (text: String, line: Int?, field: String?, message: String)) {
        let error = #expect(throws: ManifestError.self) { try PluginManifest(parsing: broken.text, path: "plugins/bad.toml") }
        #expect(error?.file == "plugins/bad.toml")
        #expect(error?.line == broken.line, "line of: \(error?.description ?? "")")
        #expect(error?.field == broken.field, "field of: \(error?.description ?? "")")
        #expect(error?.message.contains(broken.message) == true, "message: \(error?.description ?? "")")
    }

    @Test func theErrorReadsAsOneLine() {
        let error = ManifestError(file: "plugins/mdns.toml", line: 4, field: "kind", message: "'x' is not a plugin kind")
        #expect(error.description == "plugins/mdns.toml:4: field 'kind' 'x' is not a plugin kind")
    }

    @Test func anUnreadableFileIsNamed() {
        let error = #expect(throws: ManifestError.self) { try PluginManifest(contentsOf: "/nonexistent/plugin.toml") }
        #expect(error?.description.hasPrefix("/nonexistent/plugin.toml: cannot read the manifest") == true)
    }
}
