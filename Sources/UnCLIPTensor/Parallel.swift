import Synchronization
#if canImport(COpenMP) && os(Linux)
import COpenMP
#endif
#if canImport(Dispatch)
import Dispatch
#endif

/// Engine-wide compute settings.
public enum Engine {
    /// Runs `body` and returns its result with the floating-point operations of the convolutions, linear layers,
    /// matrix products and attention products it ran (2 per multiply-add, forward passes only), for a benchmark's
    /// achieved throughput. Not nested and not per task: counts every thread's ops while it runs. Outside it each of
    /// those ops pays one relaxed atomic load.
    public static func countingFLOPs<T>(_ body: () throws -> T) rethrows -> (result: T, flops: Int) {
        flops.store(0, ordering: .relaxed)
        counting.store(true, ordering: .relaxed)
        defer { counting.store(false, ordering: .relaxed) }
        let result = try body()
        return (result, flops.load(ordering: .relaxed))
    }

    /// Adds `n` FLOPs to the count while `countingFLOPs` runs.
    @inline(__always) static func addFLOPs(_ n: @autoclosure () -> Int) {
        if counting.load(ordering: .relaxed) { flops.add(n(), ordering: .relaxed) }
    }
    private static let counting = Atomic<Bool>(false)
    private static let flops = Atomic<Int>(0)

    /// Threads used by the engine's kernels and oneDNN (OMP_NUM_THREADS, else the core count).
    public static var threadCount: Int {
        #if os(Linux)
        return Int(omp_get_max_threads())
        #else
        return max(1, ProcessInfoShim.activeProcessorCount)
        #endif
    }
}

#if !os(Linux)
enum ProcessInfoShim {
    static var activeProcessorCount: Int { 8 }
}
#endif

private final class ParallelContext {
    let n: Int
    let body: (Range<Int>) -> Void
    init(n: Int, body: @escaping (Range<Int>) -> Void) { self.n = n; self.body = body }
}

/// Runs `body` over `0..<n` split into one contiguous range per thread.
///
/// Work smaller than `grain` items runs inline on the calling thread. On Linux the ranges run on libgomp's
/// pool, the same threads oneDNN uses, so the engine never has two pools competing for the cores.
@inline(__always)
public func parallelFor(_ n: Int, grain: Int = 32_768, _ body: (Range<Int>) -> Void) {
    let threads = min(Engine.threadCount, n / max(grain, 1))
    if threads <= 1 { if n > 0 { body(0..<n) }; return }
    withoutActuallyEscaping(body) { escaping in
        let ctx = ParallelContext(n: n, body: escaping)
        let raw = Unmanaged.passUnretained(ctx).toOpaque()
        #if os(Linux)
        GOMP_parallel({ p in
            let ctx = Unmanaged<ParallelContext>.fromOpaque(p!).takeUnretainedValue()
            let t = Int(omp_get_thread_num()), nt = Int(omp_get_num_threads())
            let lo = ctx.n * t / nt, hi = ctx.n * (t + 1) / nt
            if lo < hi { ctx.body(lo..<hi) }
        }, raw, UInt32(threads), 0)
        #else
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            let lo = n * t / threads, hi = n * (t + 1) / threads
            if lo < hi { ctx.body(lo..<hi) }
        }
        #endif
        _ = ctx
    }
}
