import XCTest
@testable import UnCLIPTensor

/// The bf16 inference path: operands rounded to bf16 (round to nearest even), fp32 accumulation and result.
final class PrecisionTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(Precision.hardwareSupportsBF16, "this CPU has no avx512_bf16 / AMX")
    }

    /// `t` with every element rounded to the nearest bfloat16 (ties to even), as fp32.
    func roundedToBF16(_ t: Tensor) -> Tensor {
        Tensor(shape: t.shape, t.toArray().map { x in
            let b = x.bitPattern
            return Float(bitPattern: ((b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16) << 16)
        })
    }

    func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.toArray(), b.toArray()).map { abs($0 - $1) }.max() ?? 0
    }

    /// A bf16 convolution equals the fp32 convolution of the bf16-rounded operands (up to accumulation order), and
    /// differs from the fp32 convolution of the exact ones: the operands, and only they, were rounded.
    func testConvolutionRoundsOperandsOnly() {
        var rng = SimpleLCG(seed: 31)
        // Large enough for the weight cache (≥ 64 Ki elements), with bias, stride 1 and 2.
        let x = rng.tensor([2, 64, 12, 12]), w = rng.tensor([128, 64, 3, 3], scale: 0.1), b = rng.tensor([128])
        for stride in [1, 2] {
            let exact = withNoGrad { x.conv2d(weight: w, bias: b, stride: stride, padding: 1) }
            let reference = withNoGrad { roundedToBF16(x).conv2d(weight: roundedToBF16(w), bias: b, stride: stride, padding: 1) }
            for _ in 0..<2 {  // the second call takes the cached bf16 weight
                let y = withNoGrad { withPrecision(.bf16) { x.conv2d(weight: w, bias: b, stride: stride, padding: 1) } }
                XCTAssertEqual(y.shape, exact.shape)
                XCTAssertLessThan(maxAbsDifference(y, reference), 1e-4, "stride \(stride)")
                XCTAssertGreaterThan(maxAbsDifference(y, exact), 1e-4, "stride \(stride): bf16 rounding left no trace")
            }
        }
    }

    func testLinearRoundsOperandsOnly() {
        var rng = SimpleLCG(seed: 32)
        // 2 · 40 · 512 · 256 flops: above the primitive's threshold.
        let x = rng.tensor([2, 20, 256]), w = rng.tensor([512, 256], scale: 0.1), b = rng.tensor([512])
        let exact = withNoGrad { x.linear(weight: w, bias: b) }
        let reference = withNoGrad { roundedToBF16(x).linear(weight: roundedToBF16(w), bias: b) }
        for batch in [x, x.reshaped([40, 256])] {  // another row shape reuses the cached weight's layout
            let y = withNoGrad { withPrecision(.bf16) { batch.linear(weight: w, bias: b) } }
            XCTAssertLessThan(maxAbsDifference(y.reshaped(exact.shape), reference), 1e-4)
            XCTAssertGreaterThan(maxAbsDifference(y.reshaped(exact.shape), exact), 1e-4)
        }
    }

    /// Ops recording a graph stay fp32 (training is not run in bf16 by this setting), and fp32 is the default.
    func testRecordedOpsAndDefaultStayFP32() {
        var rng = SimpleLCG(seed: 33)
        let x = rng.tensor([1, 64, 8, 8]), w = rng.tensor([128, 64, 3, 3], scale: 0.1)
        XCTAssertEqual(Precision.current, .fp32)
        let exact = withNoGrad { x.conv2d(weight: w, bias: nil, padding: 1) }.toArray()
        w.requiresGrad = true
        let recorded = withPrecision(.bf16) { x.conv2d(weight: w, bias: nil, padding: 1) }
        XCTAssertTrue(recorded.requiresGrad)
        XCTAssertEqual(recorded.toArray(), exact)
        let fp32 = withNoGrad { withPrecision(.fp32) { x.conv2d(weight: w, bias: nil, padding: 1) } }
        XCTAssertEqual(fp32.toArray(), exact)
    }

    /// A weight written in place after a bf16 call is converted again, not served stale from the cache.
    func testCachedBF16WeightFollowsInPlaceWrites() {
        var rng = SimpleLCG(seed: 34)
        let x = rng.tensor([1, 64, 6, 6]), w = rng.tensor([128, 64, 3, 3], scale: 0.1)
        let before = withNoGrad { withPrecision(.bf16) { x.conv2d(weight: w, bias: nil, padding: 1) } }
        w.data.update(repeating: 0, count: w.count)
        let after = withNoGrad { withPrecision(.bf16) { x.conv2d(weight: w, bias: nil, padding: 1) } }
        XCTAssertGreaterThan(before.toArray().map(abs).max()!, 0)
        XCTAssertEqual(after.toArray().map(abs).max()!, 0)
    }
}
