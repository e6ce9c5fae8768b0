import Testing
import VitalsWeb

@Suite("token buckets per client address (values)")
struct TokenBucketsTests {
    @Test("3 a minute: three at once, then one every 20 s; another address has its own bucket")
    func refill() {
        var b = TokenBuckets(perMinute: 3)
        #expect(b.take("a", now: 0) == nil && b.take("a", now: 0) == nil && b.take("a", now: 0) == nil)
        #expect(b.take("a", now: 0) == 20)
        // 10 s later half a request has come back: 10 s to wait.
        #expect(b.take("a", now: 10) == 10)
        #expect(b.take("a", now: 20) == nil)
        #expect(b.take("a", now: 20) == 20)
        #expect(b.take("b", now: 20) == nil)
        // A long pause refills to 3, never more.
        for _ in 1...3 { #expect(b.take("a", now: 1_000) == nil) }
        #expect(b.take("a", now: 1_000) == 20)
        // A clock set back refills nothing.
        #expect(b.take("a", now: 500) == 20)
    }

    @Test("beyond the most keys, idle addresses are forgotten first, then the least recent")
    func bounded() {
        var b = TokenBuckets(perMinute: 3, maximumKeys: 2)
        _ = b.take("a", now: 0)
        _ = b.take("b", now: 100)
        _ = b.take("c", now: 100)
        // a had refilled by 100 s (idle): forgotten; b and c are spending.
        #expect(b.count == 2)
        _ = b.take("d", now: 101)
        // None idle: the most recent half (1) stays.
        #expect(b.count == 1)
        #expect(b.take("d", now: 101) == nil && b.take("d", now: 101) == nil && b.take("d", now: 101) != nil)
    }
}
