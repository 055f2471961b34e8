import Foundation

/// A value behind a lock, with `Mutex`'s `withLock`.
///
/// Where concurrent code meets (the model's admission and batch counts, shared batches, the server's job board,
/// file store and timings) this stands in for the standard library's `Synchronization.Mutex`, which
/// ThreadSanitizer cannot see on Linux: the lock's slow path is a futex in the uninstrumented standard library, so
/// every access it protects reads as a race (a `Mutex<Int>` incremented from 8 threads 80 000 times: the exact count,
/// and two race reports; docs/reliability.md, "Sanitizers"). `NSLock` is a pthread mutex, which ThreadSanitizer
/// intercepts, so a race it reports around these values is a real one.
public final class Locked<Value> {
    private let lock = NSLock()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

extension Locked: @unchecked Sendable where Value: Sendable {}
