import KizunaSDK

extension Conformance {
    static let lifecycleChecks: [ConformanceCheck] = [
        ConformanceCheck("lifecycle.starts", "run calls context.ready() within 10 s and keeps running; the plugin answers its first call") { environment in
            if let skip = try environment.requireTransportIfNeeded() { return skip }
            let plugin = try environment.startSubject(on: environment.host("a"))
            try await probe(plugin)
            if let ended = await plugin.runEnded(within: .milliseconds(500)) {
                throw CheckFailure("run ended right after it started: \(describe(ended))")
            }
            return .passed()
        },
        ConformanceCheck("lifecycle.stops-within-grace", "run returns within 5 s of its shutdown subscription firing") { environment in
            if let skip = try environment.requireTransportIfNeeded() { return skip }
            let plugin = try environment.startSubject(on: environment.host("a"))
            try await probe(plugin)
            let report = await plugin.stop(grace: .seconds(5))
            try require(report.ended, "run never returned, not even after its tasks were cancelled (a host reports this plugin stuck)")
            try require(report.returnedInGrace, "run did not return within 5 s of its shutdown subscription firing; it ended only once its tasks were cancelled")
            if let error = report.error { throw CheckFailure("run threw when asked to stop: \(error)") }
            return .passed()
        },
        ConformanceCheck("lifecycle.no-leftover-tasks", "no task of the plugin is left a second after run returns") { environment in
            if let skip = try environment.requireTransportIfNeeded() { return skip }
            let plugin = try environment.startSubject(on: environment.host("a"))
            try await probe(plugin)
            let report = await plugin.stop(grace: .seconds(5))
            try require(report.ended, "run never returned, so its tasks could not be checked")
            try require(
                report.leftoverTasks.isEmpty,
                "\(report.leftoverTasks.count) task(s) still running a second after run returned: \(report.leftoverTasks.map { $0.isEmpty ? "(unnamed)" : $0 }.joined(separator: ", ")); cancel or await them before run returns")
            return .passed()
        },
        ConformanceCheck("lifecycle.restart", "a fresh instance starts, stops and starts again on the same host") { environment in
            if let skip = try environment.requireTransportIfNeeded() { return skip }
            let host = environment.host("a")
            for round in 1...2 {
                let plugin = try environment.startSubject(on: host)
                try await probe(plugin)
                let report = await plugin.stop()
                await host.stopAll()
                try require(report.ended, "start \(round): run never returned when asked to stop, so it cannot be started again cleanly")
                if let error = report.error { throw CheckFailure("start \(round): run threw when asked to stop: \(error)") }
            }
            return .passed()
        },
        ConformanceCheck("lifecycle.reload", "the plugin is swapped for a fresh instance while the rest of the host keeps running") { environment in
            if let skip = try environment.requireTransportIfNeeded() { return skip }
            let host = environment.host("a")
            let first = try environment.startSubject(on: host)
            try await probe(first)
            _ = await first.stop()
            let second = try host.start(try environment.subject.make(), name: environment.subject.name, settings: environment.settings(for: host), provides: environment.subject.provides)
            try await probe(second)
            if let ended = await second.runEnded(within: .milliseconds(500)) {
                throw CheckFailure("the new instance's run ended right after it started: \(describe(ended))")
            }
            return .passed()
        },
    ]

    /// Waits for the plugin to report ready, then makes its first call, by kind, each within 10 s.
    static func probe(_ plugin: HostedPlugin) async throws {
        guard await plugin.ready.subscribe().wait(within: .seconds(10)) else {
            if let ended = await plugin.runEnded(within: .zero) { throw CheckFailure("run ended before it called context.ready(): \(describe(ended))") }
            throw CheckFailure("run did not call context.ready() within 10 s; a host stops such a plugin and reports it failed")
        }
        let answered = ShutdownSignal()
        let object = plugin.object
        let call = try plugin.scope.spawn(name: "probe") { () async -> String? in
            defer { answered.signal() }
            switch object {
            case .transport(let transport):
                return await transport.listeningAddress() == nil ? "listeningAddress() is nil once running" : nil
            case .discovery(let discovery):
                _ = await discovery.currentPeers()
            case .streaming(let streaming):
                _ = streaming.watch()
            case .fileTransfer:
                break
            }
            return nil
        }
        guard await answered.subscribe().wait(within: .seconds(10)) else {
            call.cancel()
            throw CheckFailure("its first call (\(object.kind == .transport ? "listeningAddress()" : object.kind == .discovery ? "currentPeers()" : "watch()")) did not return within 10 s")
        }
        if let problem = await call.value { throw CheckFailure(problem) }
    }

    static func describe(_ result: Result<Void, any Error>) -> String {
        switch result {
        case .success: "it returned without being asked to stop"
        case .failure(let error): "it threw \(error)"
        }
    }
}
