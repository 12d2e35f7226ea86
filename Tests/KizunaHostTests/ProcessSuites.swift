import Testing

/// The suites that run real `kizuna` processes (and builds) and wait for them with
/// blocking calls. They run one at a time: a synchronous test holds a thread of Swift's
/// cooperative pool while it waits, the pool is as wide as the machine has CPUs (2 on CI),
/// and two such suites at once starved every async test of the run.
@Suite(.serialized) enum ProcessSuites {}
