import XCTest
@testable import UnCLIPTensor

private func iota(_ shape: [Int]) -> Tensor {
    Tensor(shape: shape, (0..<shape.reduce(1, *)).map { Float($0) })
}

/// Reference permutation by a plain multi-index walk.
private func referencePermute(_ t: Tensor, _ perm: [Int]) -> [Float] {
    let outShape = perm.map { t.shape[$0] }
    let inStrides = Tensor.strides(t.shape), outStrides = Tensor.strides(outShape)
    return (0..<t.count).map { o in
        var off = 0
        for (i, a) in perm.enumerated() { off += (o / outStrides[i]) % outShape[i] * inStrides[a] }
        return t.data[off]
    }
}

final class ShapeOpsTests: XCTestCase {
    func testPermuteMatchesReference() {
        let cases: [([Int], [Int])] = [
            ([2, 3], [1, 0]), ([2, 45, 70], [0, 2, 1]), ([2, 70, 45], [0, 2, 1]), ([2, 5, 3, 7], [0, 2, 1, 3]),
            ([2, 5, 3, 7], [0, 2, 3, 1]), ([2, 5, 3, 7], [3, 1, 0, 2]), ([2, 1, 3, 1], [3, 2, 1, 0]),
            ([1, 64, 1, 33], [0, 3, 2, 1]), ([4, 3, 2], [2, 1, 0]), ([3, 4, 5, 6, 2], [4, 2, 0, 3, 1]),
            ([2, 77, 4, 16], [0, 2, 1, 3]), ([2, 4, 77, 16], [0, 2, 1, 3]), ([2, 128, 1000], [0, 2, 1]),
        ]
        for (shape, perm) in cases {
            let x = iota(shape)
            let y = x.permuted(perm)
            XCTAssertEqual(y.shape, perm.map { shape[$0] })
            XCTAssertEqual(y.toArray(), referencePermute(x, perm), "permute \(shape) by \(perm)")
        }
        let x = iota([2, 3, 4])
        XCTAssertEqual(x.permuted([-1, 0, 1]).toArray(), x.permuted([2, 0, 1]).toArray())
        XCTAssertEqual(x.transposed(-1, 0).toArray(), x.permuted([2, 1, 0]).toArray())
        XCTAssertEqual(x.transposed(1, 1).toArray(), x.toArray())
        XCTAssertEqual(Tensor(scalar: 5).permuted([]).item, 5)
    }

    func testSliceSplitChunkConcat() {
        let x = iota([3, 4, 5])
        let s = x.sliced(axis: 1, 1..<3)
        XCTAssertEqual(s.shape, [3, 2, 5])
        XCTAssertEqual(s[2, 1, 4], x[2, 2, 4])
        XCTAssertEqual(x.sliced(axis: -1, 4..<5).toArray(), stride(from: 4, to: 60, by: 5).map(Float.init))
        // Slices along the first axis are views.
        let v = x.sliced(axis: 0, 1..<2)
        XCTAssertTrue(v.storage === x.storage)
        XCTAssertEqual(v.toArray(), Array(20..<40).map(Float.init))
        XCTAssertEqual(x.sliced(axis: 2, 2..<2).shape, [3, 4, 0])

        let parts = x.split(sizes: [1, 3], axis: 1)
        XCTAssertEqual(parts.map(\.shape), [[3, 1, 5], [3, 3, 5]])
        XCTAssertEqual(Tensor.concat(parts, axis: 1).toArray(), x.toArray())
        XCTAssertEqual(Tensor.concat(x.split(sizes: [2, 0, 3], axis: -1), axis: -1).toArray(), x.toArray())
        // torch.chunk semantics: ⌈n/k⌉-sized pieces, possibly fewer than k.
        XCTAssertEqual(iota([5]).chunked(3, axis: 0).map(\.shape), [[2], [2], [1]])
        XCTAssertEqual(iota([6]).chunked(4, axis: 0).map(\.shape), [[2], [2], [2]])
        XCTAssertEqual(iota([2, 6]).chunked(2, axis: 1).map { $0.toArray() }, [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9, 10, 11]])
        let a = iota([2, 2]), b = iota([1, 2]) + 10
        XCTAssertEqual(Tensor.concat([a, b], axis: 0).toArray(), [0, 1, 2, 3, 10, 11])
        XCTAssertEqual(Tensor.concat([a, a], axis: 1).toArray(), [0, 1, 0, 1, 2, 3, 2, 3])
    }

    func testPadGatherWhere() {
        let x = iota([2, 3])
        let p = x.padded([(1, 0), (0, 2)], value: -1)
        XCTAssertEqual(p.shape, [3, 5])
        XCTAssertEqual(p.toArray(), [-1, -1, -1, -1, -1, 0, 1, 2, -1, -1, 3, 4, 5, -1, -1])
        XCTAssertEqual(Tensor(scalar: 2).padded([]).item, 2)

        let table = iota([4, 3])
        XCTAssertEqual(table.gatherRows([3, 0, 3]).toArray(), [9, 10, 11, 0, 1, 2, 9, 10, 11])
        XCTAssertEqual(table.gatherRows([]).shape, [0, 3])

        let cond = Tensor(shape: [2, 1], [1, 0])
        let w = Tensor.where(cond, iota([2, 3]), Tensor(scalar: -1))
        XCTAssertEqual(w.toArray(), [0, 1, 2, -1, -1, -1])
    }

    func testGatherRowsGradientAccumulatesRepeatedIds() {
        let table = iota([4, 2]); table.requiresGrad = true
        let picked = withGrad { table.gatherRows([1, 3, 1]) }
        withGrad { (picked * Tensor(shape: [3, 2], [1, 2, 3, 4, 5, 6])).sum() }.backward()
        XCTAssertEqual(table.grad!.toArray(), [0, 0, 6, 8, 0, 0, 3, 4])
    }

    func testGradients() {
        let x = Tensor(shape: [2, 3, 4], (0..<24).map { Float($0) * 0.37 - 4 })
        let y = Tensor(shape: [2, 2, 4], (0..<16).map { Float($0) * -0.21 + 1 })
        let checks: [(String, [Tensor], ([Tensor]) -> Tensor)] = [
            ("permute", [x], { $0[0].permuted([2, 0, 1]) }),
            ("permute inner", [x], { $0[0].permuted([1, 0, 2]) }),
            ("transpose", [x], { $0[0].transposed(0, 2) }),
            ("reshape", [x], { $0[0].reshaped([4, -1]) }),
            ("slice", [x], { $0[0].sliced(axis: 1, 1..<3) }),
            ("slice view", [x], { $0[0].sliced(axis: 0, 1..<2) }),
            ("concat", [x, y], { Tensor.concat([$0[0], $0[1]], axis: 1) }),
            ("split", [x], { xs in let p = xs[0].split(sizes: [1, 2], axis: 1); return p[0] * 2 + p[1].sum(axes: [1], keepDims: true) }),
            ("chunk", [x], { xs in let c = xs[0].chunked(2, axis: -1); return c[0] * c[1] }),
            ("pad", [x], { $0[0].padded([(0, 1), (2, 0), (1, 1)], value: 3) }),
            ("gather", [x.reshaped([6, 4])], { $0[0].gatherRows([5, 0, 5, 2]) }),
            ("where", [x, y.sliced(axis: 1, 0..<1)], { xs in
                Tensor.where(Tensor(shape: [3, 1], [1, 0, 1]), xs[0], xs[1]) }),
        ]
        for (name, inputs, f) in checks {
            XCTAssertLessThan(gradientCheckError(inputs) { f($0) }, 1e-2, name)
        }
    }

    func testTransposeThroughput() {
        // The attention layouts: [B, C, HW] ↔ [B, HW, C] and [B, L, H, dh] → [B, H, L, dh] (printed, not asserted).
        let a = Tensor.zeros([2, 320, 4096]), b = Tensor.zeros([2, 4096, 8, 40])
        for (name, f) in [("copy (for scale)", { a.clone() }), ("[2,320,4096]→[2,4096,320]", { a.permuted([0, 2, 1]) }),
                          ("[2,4096,8,40]→[2,8,4096,40]", { b.permuted([0, 2, 1, 3]) })] as [(String, () -> Tensor)] {
            var best = Double.infinity
            for _ in 0..<5 { let t0 = Date(); _ = withNoGrad(f); best = Swift.min(best, Date().timeIntervalSince(t0)) }
            print(String(format: "permute %@: %.2f ms (%.1f GB/s read+write)", name, best * 1000, Double(a.count * 8) / best / 1e9))
        }
    }
}
