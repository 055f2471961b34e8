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

    /// `op(x, w, b)` on fresh copies of the three, back-propagated from `upstream` at `precision` (mixed-precision
    /// training): [output, input gradient, weight gradient, bias gradient].
    func differentiated(_ x: Tensor, _ w: Tensor, _ b: Tensor, upstream: Tensor, _ precision: Precision,
                        _ op: (Tensor, Tensor, Tensor) -> Tensor) -> [Tensor] {
        let (px, pw, pb) = (x.clone(), w.clone(), b.clone())
        for p in [px, pw, pb] { p.requiresGrad = true }
        let y = withPrecision(precision, differentiating: true) {
            let y = op(px, pw, pb)
            y.backward(upstream)
            return y
        }
        return [y.detached(), px.grad!, pw.grad!, pb.grad!]
    }

    /// Mixed-precision training: forward, input, weight and bias gradients of a bf16 convolution equal the fp32 ones
    /// computed from bf16-rounded input, weight and upstream gradient (up to accumulation order), and differ from the
    /// exact fp32 ones. The gradients come back as fp32 tensors of the parameters' shapes.
    func testMixedPrecisionConvolutionBackwardRoundsOperandsOnly() {
        var rng = SimpleLCG(seed: 35)
        let x = rng.tensor([2, 64, 10, 10]), w = rng.tensor([96, 64, 3, 3], scale: 0.1), b = rng.tensor([96])
        for stride in [1, 2] {
            let oh = (10 + 2 - 3) / stride + 1
            let g = rng.tensor([2, 96, oh, oh])
            func run(_ x: Tensor, _ w: Tensor, _ g: Tensor, _ precision: Precision) -> [Tensor] {
                differentiated(x, w, b, upstream: g, precision) { $0.conv2d(weight: $1, bias: $2, stride: stride, padding: 1) }
            }
            let mixed = run(x, w, g, .bf16)
            let reference = run(roundedToBF16(x), roundedToBF16(w), roundedToBF16(g), .fp32)
            let exact = run(x, w, g, .fp32)
            for (i, name) in ["output", "input gradient", "weight gradient", "bias gradient"].enumerated() {
                XCTAssertEqual(mixed[i].shape, exact[i].shape, name)
                let scale = exact[i].toArray().map(abs).max()!
                XCTAssertLessThan(maxAbsDifference(mixed[i], reference[i]), 2e-5 * scale, "stride \(stride): \(name)")
                XCTAssertGreaterThan(maxAbsDifference(mixed[i], exact[i]), 1e-4 * scale, "stride \(stride): \(name) shows no bf16 rounding")
            }
        }
    }

    /// The same for a linear layer large enough for the primitive path: the forward product and both backward
    /// products take bf16 operands; the bias gradient is the fp32 sum of the upstream gradient.
    func testMixedPrecisionLinearBackwardRoundsOperandsOnly() {
        var rng = SimpleLCG(seed: 36)
        let x = rng.tensor([4, 16, 256]), w = rng.tensor([512, 256], scale: 0.1), b = rng.tensor([512])
        let g = rng.tensor([4, 16, 512])
        func run(_ x: Tensor, _ w: Tensor, _ g: Tensor, _ precision: Precision) -> [Tensor] {
            differentiated(x, w, b, upstream: g, precision) { $0.linear(weight: $1, bias: $2) }
        }
        let mixed = run(x, w, g, .bf16)
        let reference = run(roundedToBF16(x), roundedToBF16(w), roundedToBF16(g), .fp32)
        let exact = run(x, w, g, .fp32)
        for (i, name) in ["output", "input gradient", "weight gradient"].enumerated() {
            XCTAssertEqual(mixed[i].shape, exact[i].shape, name)
            let scale = exact[i].toArray().map(abs).max()!
            XCTAssertLessThan(maxAbsDifference(mixed[i], reference[i]), 2e-5 * scale, name)
            XCTAssertGreaterThan(maxAbsDifference(mixed[i], exact[i]), 1e-4 * scale, "\(name) shows no bf16 rounding")
        }
        XCTAssertLessThan(maxAbsDifference(mixed[3], exact[3]), 1e-4, "the bias gradient is summed in fp32 from the exact upstream gradient")
    }

    /// A small product (below the primitive's threshold) stays fp32 in mixed-precision training, and fp32 with
    /// `differentiating` is bit-identical to no precision setting at all.
    func testMixedPrecisionLeavesSmallProductsAndFP32Exact() {
        var rng = SimpleLCG(seed: 37)
        let x = rng.tensor([4, 32]), w = rng.tensor([16, 32]), g = rng.tensor([4, 16])
        func gradient(_ precision: Precision?) -> ([Float], [Float]) {
            let px = x.clone(), pw = w.clone()
            px.requiresGrad = true; pw.requiresGrad = true
            let y: Tensor
            if let precision {
                y = withPrecision(precision, differentiating: true) { let y = px.linear(weight: pw, bias: nil); y.backward(g); return y }
            } else {
                y = px.linear(weight: pw, bias: nil); y.backward(g)
            }
            return (y.toArray(), pw.grad!.toArray())
        }
        let plain = gradient(nil)
        XCTAssertTrue(gradient(.bf16) == plain)
        XCTAssertTrue(gradient(.fp32) == plain)
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
