import XCTest
@testable import UnCLIPTensor

/// Reference reduction by a plain multi-index walk in Double.
private func referenceReduce(_ t: Tensor, axes: [Int], _ combine: ([Double]) -> Double) -> [Double] {
    let r = t.rank
    let ax = Set(axes.isEmpty ? Array(0..<r) : axes.map { $0 < 0 ? $0 + r : $0 })
    let kept = t.shape.enumerated().map { ax.contains($0.offset) ? 1 : $0.element }
    let keptStrides = Tensor.strides(kept)
    var groups = [[Double]](repeating: [], count: kept.reduce(1, *))
    let strides = Tensor.strides(t.shape)
    for i in 0..<t.count {
        var o = 0
        for d in 0..<r where !ax.contains(d) { o += (i / strides[d]) % t.shape[d] * keptStrides[d] }
        groups[o].append(Double(t.data[i]))
    }
    return groups.map(combine)
}

private func values(_ shape: [Int], seed: Int = 1) -> Tensor {
    let n = shape.reduce(1, *)
    return Tensor(shape: shape, (0..<n).map { i in Float(((i + seed) * 7919 + seed * 104_729) % 1009) / 101 - 5 })
}

final class ReduceOpsTests: XCTestCase {
    let cases: [([Int], [Int])] = [
        ([2, 3, 4], []), ([2, 3, 4], [0]), ([2, 3, 4], [1]), ([2, 3, 4], [2]), ([2, 3, 4], [-1]), ([2, 3, 4], [0, 2]),
        ([2, 3, 4], [1, 2]), ([2, 3, 4], [0, 1]), ([3, 4, 5, 6], [0, 2]), ([3, 4, 5, 6], [1, 3]), ([3, 1, 5], [1]),
        ([3, 1, 5], [0, 1]), ([7], [0]), ([3, 100_003], [1]), ([2, 300_000], [1]), ([1000, 37], [0]),
        ([4, 300, 70], [1]), ([2, 4, 2500], [2]), ([5, 2049], [0]),
    ]

    func testSumMatchesReference() {
        for (shape, axes) in cases {
            let x = values(shape)
            let ref = referenceReduce(x, axes: axes) { $0.reduce(0, +) }
            let magnitude = referenceReduce(x, axes: axes) { $0.map(Swift.abs).reduce(0, +) }
            let y = withNoGrad { x.sum(axes: axes, keepDims: true) }
            // Float inputs, Double reference: allow the output's own rounding plus a little of Σ|x|.
            for (a, (b, m)) in zip(y.toArray(), zip(ref, magnitude)) {
                XCTAssertEqual(Double(a), b, accuracy: 1e-7 * m + Double(Float(b).ulp), "sum \(shape) over \(axes)")
            }
        }
    }

    func testSumShapesAndEdgeCases() {
        let x = values([2, 3, 4])
        XCTAssertEqual(x.sum(axes: [1]).shape, [2, 4])
        XCTAssertEqual(x.sum(axes: [1], keepDims: true).shape, [2, 1, 4])
        XCTAssertEqual(x.sum().shape, [])
        XCTAssertEqual(x.sum(axes: [-1, 0]).shape, [3])
        XCTAssertEqual(Tensor(scalar: 3).sum().item, 3)
        XCTAssertEqual(Tensor(scalar: 3).sum().shape, [])
        XCTAssertEqual(Tensor.zeros([0, 3]).sum(axes: [0]).toArray(), [0, 0, 0])
        XCTAssertEqual(Tensor.zeros([0]).sum().item, 0)
    }

    func testLongSumsStayAccurate() {
        // A plain Float accumulator stops at 2²⁴ = 16 777 216.
        let n = 20_000_001
        XCTAssertEqual(Tensor.ones([n]).sum().item, Float(n))
        XCTAssertEqual(Tensor.ones([n, 1]).sum(axes: [0]).item, Float(n))
        let tenths = Tensor.full([4, 3_000_000], 0.1)
        // Exact: 300000.0045 → the nearest Float, 300000.0.
        for v in tenths.sum(axes: [1]).toArray() { XCTAssertEqual(v, Float(Double(Float(0.1)) * 3e6), accuracy: 0.04) }
        let column = Tensor.full([3_000_000, 2], 0.1).sum(axes: [0])
        for v in column.toArray() { XCTAssertEqual(v, Float(Double(Float(0.1)) * 3e6), accuracy: 0.04) }
    }

    func testMeanAndVariance() {
        for (shape, axes) in cases.prefix(12) {
            let x = values(shape)
            let mean = referenceReduce(x, axes: axes) { $0.reduce(0, +) / Double($0.count) }
            let variance = referenceReduce(x, axes: axes) { v in
                let m = v.reduce(0, +) / Double(v.count)
                return v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count)  // biased
            }
            withNoGrad {
                for (a, b) in zip(x.mean(axes: axes).toArray(), mean) { XCTAssertEqual(Double(a), b, accuracy: 1e-5) }
                for (a, b) in zip(x.variance(axes: axes).toArray(), variance) { XCTAssertEqual(Double(a), b, accuracy: 1e-4) }
            }
        }
        XCTAssertEqual(Tensor(shape: [4], [1, 2, 3, 4]).variance().item, 1.25)
        XCTAssertEqual(Tensor(shape: [2, 2], [1, 2, 3, 4]).mean(axes: [0], keepDims: true).toArray(), [2, 3])
    }

    func testMaxValuesAndShapes() {
        for (shape, axes) in cases {
            let x = values(shape)
            let ref = referenceReduce(x, axes: axes) { $0.max()! }
            let y = withNoGrad { x.max(axes: axes) }
            XCTAssertEqual(y.toArray().map(Double.init), ref, "max \(shape) over \(axes)")
        }
        XCTAssertEqual(values([2, 3, 4]).max(axes: [1]).shape, [2, 4])
        XCTAssertEqual(Tensor(scalar: -2).max().item, -2)
        XCTAssertTrue(Tensor(shape: [4], [1, .nan, 3, 2]).max().item.isNaN)
    }

    func testMaxGradientGoesToFirstMaximum() {
        let x = Tensor(shape: [2, 4], [1, 5, 5, 2, 7, 0, 7, 7]); x.requiresGrad = true
        withGrad { x.max(axes: [1]).sum() }.backward()
        XCTAssertEqual(x.grad!.toArray(), [0, 1, 0, 0, 1, 0, 0, 0])
        // Over two axes: the first maximum in row-major order of the reduced axes.
        let y = Tensor(shape: [2, 2, 2], [3, 9, 9, 1, 4, 4, 4, 4]); y.requiresGrad = true
        withGrad { (y.max(axes: [0, 2]) * Tensor(shape: [2], [1, 10])).sum() }.backward()
        // Column j = 0 picks (0, 0, 1) = 9; column j = 1 picks (0, 1, 0) = 9.
        XCTAssertEqual(y.grad!.toArray(), [0, 1, 10, 0, 0, 0, 0, 0])
        let z = Tensor(shape: [2, 3], [1, 2, 3, 6, 5, 4]); z.requiresGrad = true
        withGrad { z.max() }.backward()
        XCTAssertEqual(z.grad!.toArray(), [0, 0, 0, 1, 0, 0])
    }

    func testGradients() {
        let x = values([3, 4, 5])
        for axes in [[], [0], [1], [2], [-1], [0, 2], [1, 2]] {
            XCTAssertLessThan(gradientCheckError([x]) { $0[0].sum(axes: axes) }, 1e-2, "sum \(axes)")
            XCTAssertLessThan(gradientCheckError([x]) { $0[0].mean(axes: axes, keepDims: true) }, 1e-2, "mean \(axes)")
            XCTAssertLessThan(gradientCheckError([x]) { $0[0].variance(axes: axes) }, 1e-2, "variance \(axes)")
        }
        // Distinct values 0.1 apart, so the argmax does not move under the finite-difference step.
        let distinct = Tensor(shape: [3, 4, 5], (0..<60).map { Float(($0 * 37) % 60) * 0.1 })
        for axes in [[], [0], [1], [2], [0, 2]] {
            XCTAssertLessThan(gradientCheckError([distinct], delta: 1e-2) { $0[0].max(axes: axes) }, 1e-2, "max \(axes)")
        }
        let small = values([3, 1])
        XCTAssertLessThan(gradientCheckError([small]) { $0[0].expanded(to: [2, 3, 4]) }, 1e-2, "expand")
    }
}
