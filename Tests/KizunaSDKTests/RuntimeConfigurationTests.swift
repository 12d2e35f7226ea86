import KizunaSDK
import Testing

@Suite struct RuntimeConfigurationTests {
    @Test func defaultsAreUsable() throws {
        let configuration = RuntimeConfiguration()
        try configuration.validate()
        #expect(configuration.operationPermits == 1000)
        #expect(configuration.workerThreads == RuntimeConfiguration.availableCPUCount)
        #expect(configuration.workerThreads >= 1)
    }

    @Test(arguments: [
        (RuntimeConfiguration(workerThreads: 0), "workerThreads is 0"),
        (RuntimeConfiguration(workerThreads: -3), "workerThreads is -3"),
        (RuntimeConfiguration(threadStackSize: 1024), "threadStackSize is 1024 bytes, below this platform's minimum"),
        (RuntimeConfiguration(threadNamePrefix: ""), "threadNamePrefix '' is 0 bytes"),
        (RuntimeConfiguration(threadNamePrefix: "much-too-long-prefix"), "threadNamePrefix 'much-too-long-prefix' is 20 bytes; use 1 to 9 bytes"),
        (RuntimeConfiguration(maxBlockingThreads: 0), "maxBlockingThreads is 0"),
        (RuntimeConfiguration(blockingThreadKeepAlive: .zero), "blockingThreadKeepAlive is"),
        (RuntimeConfiguration(operationPermits: 0), "operationPermits is 0"),
        (RuntimeConfiguration(metricsInterval: .seconds(-1)), "metricsInterval is"),
    ])
    func invalidValuesAreRefusedByName(configuration: RuntimeConfiguration, message: String) {
        let error = #expect(throws: RuntimeError.self) { try AsyncRuntime(configuration: configuration) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.hasPrefix(message) == true, "got: \(error?.message ?? "no error")")
    }

    @Test func stackSizeMessageNamesTheMinimum() {
        let error = #expect(throws: RuntimeError.self) {
            try RuntimeConfiguration(threadStackSize: 100).validate()
        }
        #expect(error?.message.contains("use at least \(RuntimeConfiguration.minimumThreadStackSize)") == true)
    }
}
