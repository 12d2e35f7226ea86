import KizunaSDK
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1))) struct BoundedChannelTests {
    @Test func deliversInOrderAndEndsAfterFinish() async throws {
        let channel = BoundedChannel<Int>(capacity: 8)
        let producer = Task {
            for value in 0..<1000 { try await channel.send(value) }
            channel.finish()
        }
        var received: [Int] = []
        for await value in channel { received.append(value) }
        try await producer.join()
        #expect(received == Array(0..<1000))
    }

    @Test func aFullChannelMakesTheSenderWait() async throws {
        let channel = BoundedChannel<Int>(capacity: 4)
        for value in 0..<4 { #expect(channel.trySend(value)) }
        #expect(!channel.trySend(99))
        let sent = Gate()
        let sender = Task {
            try await channel.send(4)
            sent.signal()
        }
        // The sender stays parked while the buffer is full; the buffer never grows.
        #expect(channel.count == 4)
        var received: [Int] = []
        while received.count < 5 {
            let value = await channel.receive()
            #expect(channel.count <= channel.capacity)
            received.append(value!)
        }
        try await sender.join()
        #expect(sent.isSignalled)
        #expect(received == [0, 1, 2, 3, 4])
    }

    @Test func manyProducersKeepTheirOwnOrder() async throws {
        try await withRuntime { runtime in
            let channel = BoundedChannel<(producer: Int, value: Int)>(capacity: 16)
            var producers: [Task<Void, any Error>] = []
            for producer in 0..<4 {
                producers.append(try runtime.handle.spawn {
                    for value in 0..<2000 { try await channel.send((producer, value)) }
                })
            }
            let consumer = try runtime.handle.spawn { () -> [[Int]] in
                var byProducer = [[Int]](repeating: [], count: 4)
                for await item in channel { byProducer[item.producer].append(item.value) }
                return byProducer
            }
            for producer in producers { try await producer.join() }
            channel.finish()
            let byProducer = await consumer.join()
            #expect(byProducer.allSatisfy { $0 == Array(0..<2000) })
        }
    }

    @Test func finishFailsWaitingAndLaterSendsButKeepsTheBuffer() async throws {
        let channel = BoundedChannel<String>(capacity: 1)
        try await channel.send("kept")
        let waiting = Task { try await channel.send("refused") }
        await Task.yield()
        channel.finish()
        let error = await #expect(throws: RuntimeError.self) { try await waiting.join() }
        #expect(error?.code == .closed)
        await #expect(throws: RuntimeError.self) { try await channel.send("late") }
        #expect(!channel.trySend("late"))
        #expect(await channel.receive() == "kept")
        #expect(await channel.receive() == nil)
    }

    @Test func aCancelledSenderLeavesWithoutSending() async throws {
        let channel = BoundedChannel<Int>(capacity: 1)
        try await channel.send(1)
        let sender = Task { try await channel.send(2) }
        await Task.yield()
        sender.cancel()
        await #expect(throws: CancellationError.self) { try await sender.join() }
        channel.finish()
        var received: [Int] = []
        for await value in channel { received.append(value) }
        #expect(received == [1])
    }

    @Test func aCancelledReceiverGetsNil() async {
        let channel = BoundedChannel<Int>(capacity: 1)
        let receiver = Task { await channel.receive() }
        await Task.yield()
        receiver.cancel()
        #expect(await receiver.join() == nil)
        #expect(channel.trySend(5))
        #expect(await channel.receive() == 5)
    }

    @Test func synchronousOperatorsComposeWithTheStandardAsyncOnes() async throws {
        let channel = BoundedChannel<Int>(capacity: 8)
        let producer = Task {
            for value in 1...10 { try await channel.send(value) }
            channel.finish()
        }
        // The SDK's filter and map take plain closures; an async closure picks the standard
        // library's map; both chain in either order.
        let sdkFiltered: FilteredSequence<BoundedChannel<Int>> = channel.filter { $0 > 2 }
        let chained = sdkFiltered
            .map { value async in value * 10 }
            .filter { $0 != 50 }
        var results: [Int] = []
        for await value in chained { results.append(value) }
        try await producer.join()
        #expect(results == [30, 40, 60, 70, 80, 90, 100])
    }

    @Test func broadcastAndWatchStreamsTakeTheSameOperators() async {
        let broadcast = BroadcastChannel<Int>(capacity: 8)
        let receiver = broadcast.subscribe()
        for value in 0..<6 { broadcast.send(value) }
        broadcast.finish()
        var odd: [Int] = []
        for await value in receiver.map({ $0.element ?? -1 }).filter({ $0 % 2 == 1 }) { odd.append(value) }
        #expect(odd == [1, 3, 5])

        let watch = WatchChannel(3)
        watch.finish()
        var doubled: [Int] = []
        for await value in watch.subscribe().map({ $0 * 2 }) { doubled.append(value) }
        #expect(doubled == [6])
    }

    @Test func composesWithFilterAndMap() async throws {
        let channel = BoundedChannel<Int>(capacity: 32)
        let producer = Task {
            for value in 0..<100 { try await channel.send(value) }
            channel.finish()
        }
        var results: [Int] = []
        for await value in channel.filter({ $0 % 2 == 0 }).map({ $0 + 1 }) { results.append(value) }
        try await producer.join()
        #expect(results == stride(from: 1, to: 101, by: 2).map { $0 })
    }
}

@Suite(.timeLimit(.minutes(1))) struct BroadcastChannelTests {
    @Test func everyReceiverGetsEveryElementInOrder() async throws {
        try await withRuntime { runtime in
            let channel = BroadcastChannel<Int>(capacity: 20_000)
            let receivers = (0..<4).map { _ in channel.subscribe() }
            var tasks: [Task<[Int], Never>] = []
            for receiver in receivers {
                tasks.append(try runtime.handle.spawn {
                    var values: [Int] = []
                    for await message in receiver { values.append(message.element!) }
                    return values
                })
            }
            for value in 0..<10_000 { #expect(channel.send(value) == 4) }
            channel.finish()
            for task in tasks { #expect(await task.join() == Array(0..<10_000)) }
        }
    }

    @Test func aReceiverThatFallsBehindIsToldHowManyItMissed() async {
        let channel = BroadcastChannel<Int>(capacity: 4)
        let receiver = channel.subscribe()
        for value in 0..<10 { channel.send(value) }  // never waits on the idle receiver
        channel.finish()
        var messages: [BroadcastMessage<Int>] = []
        for await message in receiver { messages.append(message) }
        #expect(messages == [.lagged(missed: 6), .element(6), .element(7), .element(8), .element(9)])
    }

    @Test func aLateSubscriberSeesOnlyLaterElements() async {
        let channel = BroadcastChannel<String>(capacity: 8)
        channel.send("before")
        let receiver = channel.subscribe()
        channel.send("after")
        #expect(receiver.tryReceive() == .element("after"))
        #expect(receiver.tryReceive() == nil)
    }

    @Test func aWaitingReceiverWakesOnSendAndDroppingUnsubscribes() async {
        let channel = BroadcastChannel<Int>(capacity: 2)
        var receiver: BroadcastReceiver<Int>? = channel.subscribe()
        let waiting = Task { [receiver] in await receiver!.receive() }
        await Task.yield()
        channel.send(41)
        #expect(await waiting.join() == .element(41))
        #expect(channel.receiverCount == 1)
        receiver = nil
        #expect(channel.receiverCount == 0)
        #expect(channel.send(1) == 0)
    }

    @Test func aCancelledReceiverGetsNil() async {
        let channel = BroadcastChannel<Int>(capacity: 2)
        let receiver = channel.subscribe()
        let waiting = Task { await receiver.receive() }
        await Task.yield()
        waiting.cancel()
        #expect(await waiting.join() == nil)
    }
}

@Suite(.timeLimit(.minutes(1))) struct WatchChannelTests {
    @Test func receiversSeeTheCurrentValueThenTheLatest() async {
        let channel = WatchChannel("starting")
        let receiver = channel.subscribe()
        var iterator = receiver.makeAsyncIterator()
        #expect(await iterator.next() == "starting")
        channel.send("skipped")
        channel.send("running")
        #expect(await iterator.next() == "running")
        #expect(channel.version == 2)
        let waiting = Task {
            var iterator = iterator
            return await iterator.next()
        }
        await Task.yield()
        channel.update { $0 += "!" }
        #expect(await waiting.join() == "running!")
        channel.finish()
        var rest: [String] = []
        for await value in receiver { rest.append(value) }
        #expect(rest == ["running!"])
    }
}

@Suite(.timeLimit(.minutes(1))) struct MergeTests {
    @Test func mergesEveryElementOfEverySequence() async throws {
        let channels = (0..<3).map { _ in BoundedChannel<Int>(capacity: 4) }
        let producers = channels.enumerated().map { index, channel in
            Task {
                for value in 0..<100 { try await channel.send(index * 1000 + value) }
                channel.finish()
            }
        }
        var received: [Int] = []
        for await value in merge(channels) { received.append(value) }
        for producer in producers { try await producer.join() }
        #expect(received.count == 300)
        for index in 0..<3 {
            let expected: [Int] = (0..<100).map { index * 1000 + $0 }
            let fromThisBase: [Int] = received.filter { $0 / 1000 == index }
            #expect(fromThisBase == expected)
        }
    }

    @Test func mergesDifferentKindsOfSequence() async throws {
        let bounded = BoundedChannel<String>(capacity: 4)
        let watch = WatchChannel("watch")
        try await bounded.send("bounded")
        bounded.finish()
        watch.finish()
        var received: [String] = []
        for await value in merge(bounded, watch.subscribe(), bounded.map { $0.uppercased() }) { received.append(value) }
        #expect(Set(received) == ["bounded", "watch"])
    }

    @Test func theFirstErrorEndsTheMerge() async throws {
        struct Broken: Error {}
        let good = BoundedChannel<Int>(capacity: 4)
        let failing = AsyncThrowingStream<Int, any Error> { continuation in
            continuation.yield(1)
            continuation.finish(throwing: Broken())
        }
        let merged = merge([good.map { $0 } as any AsyncSequence<Int, any Error> & Sendable, failing])
        await #expect(throws: Broken.self) {
            for try await _ in merged {}
        }
    }
}
