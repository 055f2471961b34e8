import XCTest
@testable import UnCLIPTensor

final class AttentionTests: XCTestCase {
    func testAttentionMatchesPyTorch() throws {
        let cases = try GemmFixtureCase.load("attention")
        XCTAssertEqual(cases.count, 5)
        for (name, c) in cases.sorted(by: { $0.key < $1.key }) {
            let scale = c.params["scale"].map { Float($0) }
            c.check(name) { scaledDotProductAttention(query: $0["q"]!, key: $0["k"]!, value: $0["v"]!, bias: $0["bias"], scale: scale) }
        }
    }

    /// The fused kernel must agree with the composition it replaces, softmax(QKᵀ·s + bias)V, written out by hand.
    func testMatchesNaiveComposition() {
        var rng = SimpleLCG(seed: 31)
        let (b, h, lq, lk, d) = (2, 2, 3, 4, 5)
        let q = rng.tensor([b, h, lq, d]), k = rng.tensor([b, h, lk, d]), v = rng.tensor([b, h, lk, d])
        let bias = rng.tensor([b, 1, lq, lk])
        let y = scaledDotProductAttention(query: q, key: k, value: v, bias: bias)
        let s = 1 / Float(d).squareRoot()
        for bi in 0..<b { for hi in 0..<h { for i in 0..<lq {
            var scores = (0..<lk).map { j in (0..<d).reduce(Float(0)) { $0 + q[bi, hi, i, $1] * k[bi, hi, j, $1] } * s + bias[bi, 0, i, j] }
            let m = scores.max()!
            scores = scores.map { Foundation.exp($0 - m) }
            let z = scores.reduce(0, +)
            for c in 0..<d {
                let want = (0..<lk).reduce(Float(0)) { $0 + scores[$1] / z * v[bi, hi, $1, c] }
                XCTAssertEqual(y[bi, hi, i, c], want, accuracy: 1e-5)
            }
        } } }
    }

    func testGradientCheckWithFullBias() {
        var rng = SimpleLCG(seed: 32)
        let q = rng.tensor([1, 2, 3, 4]), k = rng.tensor([1, 2, 5, 4]), v = rng.tensor([1, 2, 5, 3]), bias = rng.tensor([1, 2, 3, 5])
        let err = gradientCheckError([q, k, v, bias]) { scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], bias: $0[3]) }
        XCTAssertLessThan(err, 1e-2)
    }

    func testGradientCheckCausalBias() {
        var rng = SimpleLCG(seed: 33)
        let l = 4
        let causal = Tensor(shape: [l, l], (0..<(l * l)).map { $0 % l > $0 / l ? -10000 : 0 })
        let q = rng.tensor([2, 1, l, 3]), k = rng.tensor([2, 1, l, 3]), v = rng.tensor([2, 1, l, 3])
        let err = gradientCheckError([q, k, v]) { scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], bias: causal, scale: 0.7) }
        XCTAssertLessThan(err, 1e-2)
        // Row 0 sees only key 0: its output is value row 0.
        let y = scaledDotProductAttention(query: q, key: k, value: v, bias: causal)
        for c in 0..<3 { XCTAssertEqual(y[1, 0, 0, c], v[1, 0, 0, c], accuracy: 1e-6) }
    }

    func testGradientCheckKeyPaddingBias() {
        var rng = SimpleLCG(seed: 34)
        let pad = Tensor(shape: [2, 1, 1, 5], [0, 0, 0, -10000, -10000, 0, 0, 0, 0, -10000])
        let q = rng.tensor([2, 2, 3, 4]), k = rng.tensor([2, 2, 5, 4]), v = rng.tensor([2, 2, 5, 4])
        let err = gradientCheckError([q, k, v, pad]) { scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], bias: $0[3]) }
        XCTAssertLessThan(err, 1e-2)
    }

    /// Several query blocks per matrix (Lk large enough that a block holds fewer rows than Lq).
    func testGradientCheckAcrossBlocks() {
        var rng = SimpleLCG(seed: 35)
        let q = rng.tensor([1, 1, 40, 2]), k = rng.tensor([1, 1, 4000, 2]), v = rng.tensor([1, 1, 4000, 2])
        let bias = rng.tensor([1, 1, 1, 4000])
        let err = gradientCheckError([q, k, v, bias], maxElements: 16) {
            scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], bias: $0[3])
        }
        XCTAssertLessThan(err, 1e-2)
    }
}
