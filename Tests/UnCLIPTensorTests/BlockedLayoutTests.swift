import Dispatch
import XCTest
@testable import UnCLIPTensor

/// Persistent blocked layouts (BlockedLayout.swift): inference keeps convolution outputs in oneDNN's layout through
/// the ops that read it, and every other reader sees the same row-major values.
final class BlockedLayoutTests: XCTestCase {
    /// `body`'s result as row-major values, with persistent layouts on or off.
    func values(persistent: Bool, _ body: () -> Tensor) -> [Float] {
        let saved = Engine.persistentLayouts
        defer { Engine.persistentLayouts = saved }
        Engine.persistentLayouts = persistent
        return withNoGrad { body().toArray() }
    }

    func requireBlockedConvolutions() throws {
        var rng = SimpleLCG(seed: 1)
        let y = withNoGrad { rng.tensor([1, 32, 8, 8]).conv2d(weight: rng.tensor([32, 32, 3, 3]), bias: nil, padding: 1) }
        try XCTSkipIf(y.blockedValues == nil, "oneDNN chose the plain layout on this CPU: nothing stays blocked")
    }

    /// A convolution's blocked output reads as exactly the row-major output, through every accessor.
    func testBlockedConvolutionOutputReadsAsRowMajor() throws {
        try requireBlockedConvolutions()
        var rng = SimpleLCG(seed: 2)
        let x = rng.tensor([2, 32, 9, 7]), w = rng.tensor([48, 32, 3, 3], scale: 0.2), b = rng.tensor([48])
        let plain = values(persistent: false) { x.conv2d(weight: w, bias: b, padding: 1) }
        let y = withNoGrad { x.conv2d(weight: w, bias: b, padding: 1) }
        XCTAssertNotNil(y.blockedValues)
        // Several threads read the same blocked tensor at once: one converts, all see the same values.
        let readers = 8
        let seen = UnsafeMutablePointer<Float>.allocate(capacity: readers)
        defer { seen.deallocate() }
        DispatchQueue.concurrentPerform(iterations: readers) { i in seen[i] = y.data[i * 97 % y.count] }
        for i in 0..<readers { XCTAssertEqual(seen[i], plain[i * 97 % y.count]) }
        XCTAssertNil(y.blockedValues, "reading data made the values row-major")
        XCTAssertEqual(y.toArray(), plain, "the convolution is the same; only its output's layout differs")
        XCTAssertEqual(y.detached().reshaped([2, -1]).toArray(), plain)
    }

    /// A resnet-like chain (convolution, fused group norm with each kind of conditioning, residual sum, channel
    /// concatenation with a row-major tensor) stays blocked and gives the row-major computation's values to the bit.
    func testResnetChainStaysBlockedAndAgreesWithRowMajor() throws {
        try requireBlockedConvolutions()
        var rng = SimpleLCG(seed: 3)
        // 96 and 192 channels in 32 groups: groups of 3 and 6 channels, which span 16-channel blocks.
        for (c, extra) in [(32, 32), (96, 96), (128, 64)] {
            let x = rng.tensor([2, c, 8, 8])
            let w1 = rng.tensor([c, c, 3, 3], scale: 0.1), b1 = rng.tensor([c])
            let w2 = rng.tensor([c, c, 3, 3], scale: 0.1), b2 = rng.tensor([c])
            let w3 = rng.tensor([c, c + extra, 3, 3], scale: 0.1)
            let gw = rng.tensor([c]), gb = rng.tensor([c]), gw2 = rng.tensor([c + extra]), gb2 = rng.tensor([c + extra])
            let scale = rng.tensor([2, c], scale: 0.5), shift = rng.tensor([2, c], scale: 0.5)
            let timeShift = rng.tensor([2, c + extra]), skip = rng.tensor([2, extra, 8, 8])
            var states: [String: Bool] = [:]
            func chain() -> Tensor {
                let h1 = x.conv2d(weight: w1, bias: b1, padding: 1)
                let n1 = h1.groupNormConditioned(groups: 32, weight: gw, bias: gb, scale: scale, shift: shift, silu: true)
                let h2 = n1.conv2d(weight: w2, bias: b2, padding: 1)
                let sum = h1 + h2
                let joined = Tensor.concat([sum, skip], axis: 1)
                let n2 = joined.groupNormConditioned(groups: 32, weight: gw2, bias: gb2, inputShift: timeShift, silu: false)
                states = ["norm": n1.blockedValues != nil, "sum": sum.blockedValues != nil,
                          "concat": joined.blockedValues != nil, "norm2": n2.blockedValues != nil]
                return n2.conv2d(weight: w3, bias: nil, padding: 1)
            }
            let plain = values(persistent: false, chain)
            XCTAssertEqual(states.values.filter { $0 }.count, 0, "nothing is blocked with persistent layouts off")
            let blocked = values(persistent: true, chain)
            XCTAssertEqual(states, ["norm": true, "sum": true, "concat": true, "norm2": true], "\(c) channels")
            XCTAssertEqual(blocked, plain, "\(c) channels: the same values to the bit")
        }
    }

    /// An operand that the blocked sum or concatenation reorders is held by nothing but a local: it must live until
    /// the loop that reads it has run. With no scratch pool, parts over glibc's largest mmap threshold (32 MiB) are
    /// unmapped the moment they die, so reading one too late crashes (as it did, with the pool off, in Karlo's
    /// super-resolution U-Net); the values are checked against the row-major computation too.
    func testReorderedOperandsOutliveTheLoopsThatReadThem() throws {
        try requireBlockedConvolutions()
        var rng = SimpleLCG(seed: 11)
        let x = rng.tensor([1, 16, 1024, 528]), w = rng.tensor([16, 16, 3, 3], scale: 0.2)
        let plainPart = rng.tensor([1, 16, 1024, 528])  // 34.6 MB: reordered into a fresh, unmapped-on-free buffer
        func run() -> [Float] {
            BufferPool(limitBytes: 0).withPool {
                let y = x.conv2d(weight: w, bias: nil, padding: 1)
                let sum = y + plainPart
                let joined = Tensor.concat([sum, plainPart], axis: 1)
                XCTAssertEqual(Engine.persistentLayouts, joined.blockedValues != nil)
                return joined.toArray()
            }
        }
        let saved = Engine.persistentLayouts
        defer { Engine.persistentLayouts = saved }
        Engine.persistentLayouts = false
        let plain = withNoGrad { run() }
        Engine.persistentLayouts = true
        let blocked = withNoGrad { run() }
        XCTAssertEqual(blocked, plain)
    }

    /// A pool that misses while it holds buffers of other sizes releases those first, so a stage of many shapes
    /// peaks at its live tensors rather than those plus a cache it no longer asks for; repeated shapes still hit.
    func testPoolReleasesOtherSizesOnAMiss() {
        let pool = BufferPool()
        pool.withPool {
            _ = Tensor(uninitializedShape: [1000])
            _ = Tensor(uninitializedShape: [3000])
        }
        XCTAssertEqual(pool.cachedBytes, 16_000)
        pool.withPool { _ = Tensor(uninitializedShape: [1000]) }  // a hit: nothing released
        XCTAssertEqual(pool.cachedBytes, 16_000)
        pool.withPool {
            let t = Tensor(uninitializedShape: [2000])  // a miss: the oldest 8,000 bytes or more go first
            XCTAssertEqual(pool.cachedBytes, 4_000)
            withExtendedLifetime(t) {}
        }
        XCTAssertEqual(pool.cachedBytes, 12_000)
        pool.withPool { _ = Tensor(uninitializedShape: [10_000]) }  // a miss larger than the cache: nothing released
        XCTAssertEqual(pool.cachedBytes, 52_000)
    }

    /// Recorded computations never produce blocked values, and their gradients are unchanged.
    func testRecordedConvolutionStaysRowMajor() throws {
        try requireBlockedConvolutions()
        var rng = SimpleLCG(seed: 4)
        let x = rng.tensor([1, 16, 6, 6]), w = rng.tensor([16, 16, 3, 3], scale: 0.2)
        w.requiresGrad = true
        let y = x.conv2d(weight: w, bias: nil, padding: 1)
        XCTAssertNil(y.blockedValues)
        let z = y.groupNormConditioned(groups: 8, weight: nil, bias: nil, silu: true)
        XCTAssertNil(z.blockedValues)
        (z * z).sum().backward()
        XCTAssertNotNil(w.grad)
    }

    /// In-place writes and `assign` after a blocked output see and keep row-major values.
    func testWritesToABlockedTensorLand() throws {
        try requireBlockedConvolutions()
        var rng = SimpleLCG(seed: 5)
        let y = withNoGrad { rng.tensor([1, 16, 4, 4]).conv2d(weight: rng.tensor([16, 16, 1, 1]), bias: nil) }
        XCTAssertNotNil(y.blockedValues)
        y.data[5] = 42
        XCTAssertEqual(y.toArray()[5], 42)
        let z = withNoGrad { rng.tensor([1, 16, 4, 4]).conv2d(weight: rng.tensor([16, 16, 1, 1]), bias: nil) }
        let replacement = Tensor.full([1, 16, 4, 4], 3)
        z.assign(replacement)
        XCTAssertEqual(z.toArray(), replacement.toArray())
    }

    /// A read-only convolution weight, once reordered, keeps only the reordered copy: the row-major memory is
    /// released, the convolution reuses the copy, a bf16 call builds its own from it, and `data` still reads right.
    func testReadOnlyWeightKeepsOnlyItsReorderedCopy() throws {
        try requireBlockedConvolutions()
        var rng = SimpleLCG(seed: 6)
        let x = rng.tensor([2, 32, 8, 8]), original = rng.tensor([32, 32, 3, 3], scale: 0.2)
        let reference = values(persistent: false) { x.conv2d(weight: original, bias: nil, padding: 1) }
        let weight = original.clone()
        weight.storage.markReadOnly()
        let first = withNoGrad { x.conv2d(weight: weight, bias: nil, padding: 1) }.toArray()
        let kept = try XCTUnwrap(weight.blockedValues, "the reordered copy replaced the row-major values")
        XCTAssertTrue(kept.readOnly)
        let second = withNoGrad { x.conv2d(weight: weight, bias: nil, padding: 1) }.toArray()
        XCTAssertEqual(first, reference)
        XCTAssertEqual(second, reference)
        if Precision.hardwareSupportsBF16 {
            let fresh = original.clone()
            fresh.storage.markReadOnly()
            let direct = withNoGrad { withPrecision(.bf16) { x.conv2d(weight: fresh, bias: nil, padding: 1) } }.toArray()
            let fromKept = withNoGrad { withPrecision(.bf16) { x.conv2d(weight: weight, bias: nil, padding: 1) } }.toArray()
            XCTAssertEqual(fromKept, direct, "bf16 from the kept copy is bf16 from the original")
        }
        XCTAssertEqual(weight.toArray(), original.toArray(), "reading the weight gives its values back")
        XCTAssertTrue(weight.storage.isReadOnly, "and they are still read-only")
    }

    /// The blocked group norm against the row-major one over group sizes within, equal to and across blocks, batch
    /// sizes, spatial sizes over one accumulation chunk, and each conditioning.
    func testBlockedGroupNormSweep() throws {
        try requireBlockedConvolutions()
        var rng = SimpleLCG(seed: 7)
        for (n, c, groups, h, w) in [(1, 16, 16, 4, 4), (3, 32, 2, 5, 3), (2, 64, 4, 24, 24), (1, 32, 1, 3, 3),
                                     (2, 48, 3, 6, 6), (1, 64, 32, 33, 17)] {
            let x0 = rng.tensor([n, c, h, w]), cw = rng.tensor([c, c, 1, 1], scale: 0.3), cb = rng.tensor([c])
            let wgt = rng.tensor([c]), bia = rng.tensor([c])
            let t = rng.tensor([n, c]), sc = rng.tensor([n, c], scale: 0.3), sh = rng.tensor([n, c], scale: 0.3)
            for (label, f) in [("plain", { (x: Tensor) in x.groupNormConditioned(groups: groups, weight: wgt, bias: bia, silu: true) }),
                               ("shift", { x in x.groupNormConditioned(groups: groups, weight: wgt, bias: bia, inputShift: t, silu: true) }),
                               ("scale", { x in x.groupNormConditioned(groups: groups, weight: nil, bias: nil, scale: sc, shift: sh, silu: false) })] {
                let plain = values(persistent: false) { f(x0.conv2d(weight: cw, bias: cb)) }
                var wasBlocked = false
                let blocked = values(persistent: true) {
                    let x = x0.conv2d(weight: cw, bias: cb)
                    let y = f(x)
                    wasBlocked = y.blockedValues != nil
                    return y
                }
                XCTAssertTrue(wasBlocked)
                XCTAssertEqual(blocked, plain, "\(label) n \(n) c \(c) groups \(groups) \(h)×\(w)")
            }
        }
    }
}

/// `Tensor.withUntouchedZeros`: the parameters a model is built with before a load replaces them take no memory.
final class UntouchedZerosTests: XCTestCase {
    func testLargeZerosComeFromAnUntouchedMappingOnlyInTheScope() {
        let big = Tensor.withUntouchedZeros { Tensor.zeros([1024, 512]) }
        XCTAssertTrue(big.storage.owner is AnonymousMapping, "a 2 MiB zeros tensor in the scope is lazily mapped")
        XCTAssertTrue(big.toArray().allSatisfy { $0 == 0 })
        big.data[12345] = 3  // writable like any other
        XCTAssertEqual(big.data[12345], 3)
        let small = Tensor.withUntouchedZeros { Tensor.zeros([16, 16]) }
        XCTAssertNil(small.storage.owner, "small tensors stay pooled")
        XCTAssertTrue(small.toArray().allSatisfy { $0 == 0 })
        let outside = Tensor.zeros([1024, 512])
        XCTAssertNil(outside.storage.owner, "outside the scope zeros are pooled memory")
        XCTAssertTrue(outside.toArray().allSatisfy { $0 == 0 })
    }
}
