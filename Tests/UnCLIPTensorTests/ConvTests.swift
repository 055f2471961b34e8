import XCTest
@testable import UnCLIPTensor

final class ConvTests: XCTestCase {
    func testConv2dMatchesPyTorch() throws {
        let cases = try GemmFixtureCase.load("conv")
        XCTAssertEqual(cases.count, 7)
        for (name, c) in cases.sorted(by: { $0.key < $1.key }) {
            let stride = Int(c.params["stride"] ?? 1), padding = Int(c.params["padding"] ?? 0)
            c.check(name) { $0["x"]!.conv2d(weight: $0["w"]!, bias: $0["b"], stride: stride, padding: padding) }
        }
    }

    func testConv2dKnownValues() {
        // A 2×2 all-ones kernel on a 3×3 ramp, padding 0: each output is the sum of a 2×2 window, plus the bias.
        let x = Tensor(shape: [1, 1, 3, 3], (0..<9).map(Float.init))
        let w = Tensor.ones([1, 1, 2, 2])
        let y = x.conv2d(weight: w, bias: Tensor(shape: [1], [0.5]))
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        XCTAssertEqual(y.toArray(), [8.5, 12.5, 20.5, 24.5])
    }

    func testConv2dGradientCheck() {
        var rng = SimpleLCG(seed: 21)
        for (c, o, k, s, p) in [(3, 4, 3, 1, 1), (3, 2, 3, 2, 1), (2, 3, 3, 2, 0), (4, 3, 1, 1, 0), (3, 2, 2, 2, 0)] {
            let x = rng.tensor([2, c, 6, 6]), w = rng.tensor([o, c, k, k], scale: 0.5), b = rng.tensor([o])
            let err = gradientCheckError([x, w, b]) { $0[0].conv2d(weight: $0[1], bias: $0[2], stride: s, padding: p) }
            XCTAssertLessThan(err, 1e-2, "conv \(c)→\(o) k\(k) s\(s) p\(p)")
        }
        // A constant bias (no bias gradient requested) takes a backward-weights primitive without diff_bias.
        let x = rng.tensor([1, 3, 5, 5]), w = rng.tensor([2, 3, 3, 3], scale: 0.5), b = rng.tensor([2])
        XCTAssertLessThan(gradientCheckError([x, w]) { $0[0].conv2d(weight: $0[1], bias: b, padding: 1) }, 1e-2)
        XCTAssertLessThan(gradientCheckError([b]) { x.conv2d(weight: w, bias: $0[0], padding: 1) }, 1e-2)
    }

    /// The ViT patch embedding: kernel = stride = patch size, no padding, no bias.
    func testPatchConvGradientCheck() {
        var rng = SimpleLCG(seed: 22)
        let x = rng.tensor([1, 3, 14, 14]), w = rng.tensor([4, 3, 7, 7], scale: 0.2)
        let err = gradientCheckError([x, w]) { $0[0].conv2d(weight: $0[1], bias: nil, stride: 7) }
        XCTAssertLessThan(err, 1e-2)
        XCTAssertEqual(x.conv2d(weight: w, bias: nil, stride: 7).shape, [1, 4, 2, 2])
    }

    /// Channel counts that are multiples of 16 select oneDNN's blocked layouts (with reorders both ways).
    func testBlockedLayoutMatchesDirectSum() {
        var rng = SimpleLCG(seed: 23)
        let x = rng.tensor([2, 32, 5, 5]), w = rng.tensor([16, 32, 3, 3], scale: 0.2), b = rng.tensor([16])
        let y = x.conv2d(weight: w, bias: b, stride: 1, padding: 1)
        // Direct evaluation of a few outputs.
        for (n, o, i, j) in [(0, 0, 0, 0), (1, 15, 4, 4), (0, 7, 2, 3), (1, 3, 0, 4)] {
            var s = Double(b[o])
            for c in 0..<32 { for di in 0..<3 { for dj in 0..<3 {
                let yi = i + di - 1, xj = j + dj - 1
                if yi >= 0 && yi < 5 && xj >= 0 && xj < 5 { s += Double(x[n, c, yi, xj]) * Double(w[o, c, di, dj]) }
            } } }
            XCTAssertEqual(Double(y[n, o, i, j]), s, accuracy: 1e-4)
        }
    }

    /// Large weights are kept reordered between no-grad calls, and an in-place write to a single element must
    /// invalidate the cached copy.
    func testWeightCacheSeesInPlaceWrites() {
        var rng = SimpleLCG(seed: 24)
        let w = rng.tensor([256, 512, 3, 3], scale: 0.05)
        XCTAssertGreaterThanOrEqual(w.count, WeightCache.minElements)
        let x = rng.tensor([1, 512, 3, 3])
        withNoGrad {
            let first = x.conv2d(weight: w, bias: nil, padding: 1)
            let again = x.conv2d(weight: w, bias: nil, padding: 1)
            XCTAssertEqual(first.toArray(), again.toArray())
            XCTAssertGreaterThanOrEqual(WeightCache.shared.count, 1)
            w.data[w.count / 2 + 7] += 3  // one weight of output channel 128
            let changed = x.conv2d(weight: w, bias: nil, padding: 1)
            let fresh = x.conv2d(weight: w.clone(), bias: nil, padding: 1)
            XCTAssertEqual(changed.toArray(), fresh.toArray())
            XCTAssertNotEqual(changed.toArray(), first.toArray())
        }
    }

    /// oneDNN failures surface as `DNNLError`s that say which call failed and why.
    func testDNNLErrorsAreReadable() {
        let bad = ConvGeometry(n: 1, c: 1, h: 1, w: 1, o: 1, kh: 3, kw: 3, stride: 1, padding: 0, hasBias: false)  // output −1×−1
        XCTAssertThrowsError(try ConvForward(bad)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("oneDNN") && text.contains("invalid arguments"), text)
        }
    }
}
