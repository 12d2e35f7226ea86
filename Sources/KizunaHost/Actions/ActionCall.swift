import CFFI
import Glibc

/// One argument, converted from text by its declared type.
enum ActionArgument: Sendable {
    case signed(Int64)
    case unsigned(UInt64)
    case double(Double)
    case bool(Bool)
    case string(String)
}

/// Converts and calls a plugin action through libffi.
enum ActionCall {
    /// Converts `texts` by `action`'s parameter types.
    /// - Throws: ``PluginLoadError`` for a wrong number of arguments, or one that does not
    ///   parse or does not fit its type, naming the argument and the accepted range.
    static func convert(_ texts: [String], for action: PluginAction, plugin: String) throws(PluginLoadError) -> [ActionArgument] {
        guard texts.count == action.parameters.count else {
            let expected = action.parameters.isEmpty ? "no arguments" : "\(action.parameters.count) (\(action.parameters.map(\.rawValue).joined(separator: ", ")))"
            throw PluginLoadError(.actionArguments, plugin: plugin, file: "", "action '\(action.name)' takes \(expected), but \(texts.count) were given")
        }
        var arguments: [ActionArgument] = []
        for (index, (text, type)) in zip(texts, action.parameters).enumerated() {
            func refuse(_ why: String) -> PluginLoadError {
                PluginLoadError(.actionArguments, plugin: plugin, file: "", "argument \(index + 1) of action '\(action.name)' is '\(text)', \(why)")
            }
            switch type {
            case .int8, .int16, .int32, .int64:
                let (low, high) = Self.signedRange(type)
                guard let value = Int64(text) else { throw refuse("not a whole number; give a \(type) from \(low) to \(high)") }
                guard value >= low && value <= high else { throw refuse("which does not fit in \(type) (\(low) to \(high))") }
                arguments.append(.signed(value))
            case .uint8, .uint16, .uint32, .uint64:
                let high = Self.unsignedMaximum(type)
                guard let value = UInt64(text) else { throw refuse("not a whole number from 0; give a \(type) from 0 to \(high)") }
                guard value <= high else { throw refuse("which does not fit in \(type) (0 to \(high))") }
                arguments.append(.unsigned(value))
            case .double:
                guard let value = Double(text) else { throw refuse("not a number; give a double such as 1.5 or -2e3") }
                arguments.append(.double(value))
            case .bool:
                switch text.lowercased() {
                case "true", "1", "yes": arguments.append(.bool(true))
                case "false", "0", "no": arguments.append(.bool(false))
                default: throw refuse("not a boolean; give true or false")
                }
            case .string:
                guard !text.utf8.contains(0) else { throw refuse("which contains a NUL byte, which a C string cannot carry") }
                arguments.append(.string(text))
            case .void:
                throw refuse("but void is not a parameter type")
            }
        }
        return arguments
    }

    static func signedRange(_ type: ActionType) -> (Int64, Int64) {
        switch type {
        case .int8: (Int64(Int8.min), Int64(Int8.max))
        case .int16: (Int64(Int16.min), Int64(Int16.max))
        case .int32: (Int64(Int32.min), Int64(Int32.max))
        default: (Int64.min, Int64.max)
        }
    }

    static func unsignedMaximum(_ type: ActionType) -> UInt64 {
        switch type {
        case .uint8: UInt64(UInt8.max)
        case .uint16: UInt64(UInt16.max)
        case .uint32: UInt64(UInt32.max)
        default: UInt64.max
        }
    }

    static func ffiCode(_ type: ActionType) -> Int32 {
        switch type {
        case .void: 0
        case .int8: 1
        case .int16: 2
        case .int32: 3
        case .int64: 4
        case .uint8: 5
        case .uint16: 6
        case .uint32: 7
        case .uint64: 8
        case .double: 9
        case .string: 10
        case .bool: 11
        }
    }

    /// Calls `function` with `arguments` as `action` declares, and renders the result.
    /// Everything the call needs is checked before; this only marshals and calls.
    static func invoke(_ function: UnsafeMutableRawPointer, _ action: PluginAction, _ arguments: [ActionArgument]) -> String {
        // One 8-byte, 8-aligned slot per argument, each holding the value at its exact width.
        let slots = arguments.map { _ in UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8) }
        var strings: [UnsafeMutablePointer<CChar>] = []
        defer {
            for slot in slots { slot.deallocate() }
            for string in strings { free(string) }
        }
        for (slot, (argument, type)) in zip(slots, zip(arguments, action.parameters)) {
            switch (argument, type) {
            case (.signed(let value), .int8): slot.storeBytes(of: Int8(value), as: Int8.self)
            case (.signed(let value), .int16): slot.storeBytes(of: Int16(value), as: Int16.self)
            case (.signed(let value), .int32): slot.storeBytes(of: Int32(value), as: Int32.self)
            case (.signed(let value), _): slot.storeBytes(of: value, as: Int64.self)
            case (.unsigned(let value), .uint8): slot.storeBytes(of: UInt8(value), as: UInt8.self)
            case (.unsigned(let value), .uint16): slot.storeBytes(of: UInt16(value), as: UInt16.self)
            case (.unsigned(let value), .uint32): slot.storeBytes(of: UInt32(value), as: UInt32.self)
            case (.unsigned(let value), _): slot.storeBytes(of: value, as: UInt64.self)
            case (.double(let value), _): slot.storeBytes(of: value, as: Double.self)
            case (.bool(let value), _): slot.storeBytes(of: value ? 1 : 0, as: UInt8.self)
            case (.string(let value), _):
                let copy = strdup(value)!
                strings.append(copy)
                slot.storeBytes(of: copy, as: UnsafeMutablePointer<CChar>.self)
            }
        }
        var types: [UnsafeMutablePointer<ffi_type>?] = action.parameters.map { kizuna_ffi_type(ffiCode($0)) }
        var values: [UnsafeMutableRawPointer?] = slots
        var cif = ffi_cif()
        // libffi widens integer results narrower than a register to ffi_arg: room for 16 bytes.
        let result = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
        defer { result.deallocate() }
        result.initializeMemory(as: UInt64.self, repeating: 0, count: 2)
        let status = types.withUnsafeMutableBufferPointer { types in
            ffi_prep_cif(&cif, FFI_DEFAULT_ABI, UInt32(types.count), kizuna_ffi_type(ffiCode(action.returns)), types.baseAddress)
        }
        guard status == FFI_OK else { return "(libffi could not prepare the call: status \(status.rawValue))" }
        values.withUnsafeMutableBufferPointer { values in
            ffi_call(&cif, unsafeBitCast(function, to: (@convention(c) () -> Void).self), result, values.baseAddress)
        }
        let raw = result.load(as: UInt64.self)
        switch action.returns {
        case .void: return ""
        case .int8: return String(Int8(truncatingIfNeeded: raw))
        case .int16: return String(Int16(truncatingIfNeeded: raw))
        case .int32: return String(Int32(truncatingIfNeeded: raw))
        case .int64: return String(Int64(bitPattern: raw))
        case .uint8: return String(UInt8(truncatingIfNeeded: raw))
        case .uint16: return String(UInt16(truncatingIfNeeded: raw))
        case .uint32: return String(UInt32(truncatingIfNeeded: raw))
        case .uint64: return String(raw)
        case .double: return String(result.load(as: Double.self))
        case .bool: return UInt8(truncatingIfNeeded: raw) != 0 ? "true" : "false"
        case .string:
            guard let pointer = result.load(as: UnsafeMutablePointer<CChar>?.self) else { return "" }
            defer { free(pointer) }  // the plugin allocated it with malloc: ours to free
            return String(cString: pointer)
        }
    }
}
