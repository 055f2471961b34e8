import Foundation
import XCTest
@testable import UnCLIPTensor

/// The fused resnet kernel must equal the composite ops it replaces, and must stay differentiable.
final class FusedOpsTests: XCTestCase {
    private func inputs(_ seed: UInt64, n: Int = 2, c: Int = 8, h: Int = 5, w: Int = 3)
        -> (x: Tensor, weight: Tensor, bias: Tensor, a: Tensor, b: Tensor) {
        var rng = Philox(seed: seed)
        return withNoGrad {
            (Tensor.randn([n, c, h, w], using: &rng) * 2 + 0.5, Tensor.randn([c], using: &rng),
             Tensor.randn([c], using: &rng), Tensor.randn([n, c], using: &rng), Tensor.randn([n, c], using: &rng))
        }
    }

    /// Inference (no graph): bit-identical to groupNorm → ·(1 + scale) + shift → silu, and to the additive form.
    func testFusedMatchesCompositeBitForBit() {
        // 5×3 = 15 positions per channel exercises the partial-vector tail; 8 channels in 4 groups.
        let (x, weight, bias, a, b) = inputs(1)
        withNoGrad {
            let scaleShift = x.groupNormConditioned(groups: 4, weight: weight, bias: bias, scale: a, shift: b, silu: true)
            let expected1 = (x.groupNorm(groups: 4, weight: weight, bias: bias) * (a.reshaped([2, 8, 1, 1]) + 1)
                             + b.reshaped([2, 8, 1, 1])).silu()
            XCTAssertEqual(scaleShift.toArray(), expected1.toArray())

            let additive = x.groupNormConditioned(groups: 4, weight: weight, bias: bias, inputShift: a, silu: true)
            let expected2 = (x + a.reshaped([2, 8, 1, 1])).groupNorm(groups: 4, weight: weight, bias: bias).silu()
            XCTAssertEqual(additive.toArray(), expected2.toArray())

            let plain = x.groupNormConditioned(groups: 2, weight: nil, bias: nil, eps: 1e-6, silu: false)
            XCTAssertEqual(plain.toArray(), x.groupNorm(groups: 2, weight: nil, bias: nil, eps: 1e-6).toArray())
        }
    }

    /// Against values computed independently in Double: mean/variance per group, affine, time scale/shift, SiLU.
    func testFusedMatchesDoubleReference() {
        let (x, weight, bias, a, b) = inputs(2, n: 1, c: 4, h: 4, w: 4)
        let y = withNoGrad { x.groupNormConditioned(groups: 2, weight: weight, bias: bias, scale: a, shift: b, silu: true) }
        for g in 0..<2 {
            let values = (2 * g..<2 * g + 2).flatMap { ch in (0..<16).map { Double(x.data[ch * 16 + $0]) } }
            let mean = values.reduce(0, +) / 32
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 32
            for ch in 2 * g..<2 * g + 2 {
                for p in 0..<16 {
                    let norm = (Double(x.data[ch * 16 + p]) - mean) / (variance + 1e-5).squareRoot()
                    let z = (norm * Double(weight.data[ch]) + Double(bias.data[ch])) * (1 + Double(a.data[ch])) + Double(b.data[ch])
                    XCTAssertEqual(Double(y.data[ch * 16 + p]), z / (1 + Foundation.exp(-z)), accuracy: 1e-4)
                }
            }
        }
    }

    /// The fused backward against finite differences, every operand and every form (scale/shift, additive, both,
    /// neither; with and without SiLU, weight and bias).
    func testFusedGradients() {
        let (x, weight, bias, a, b) = inputs(3, n: 2, c: 4, h: 2, w: 3)
        let scaleShift = gradientCheckError([x, weight, bias, a, b], delta: 1e-2) { t in
            t[0].groupNormConditioned(groups: 2, weight: t[1], bias: t[2], scale: t[3], shift: t[4], silu: true)
        }
        XCTAssertLessThan(scaleShift, 1e-2)
        let additive = gradientCheckError([x, weight, bias, a], delta: 1e-2) { t in
            t[0].groupNormConditioned(groups: 2, weight: t[1], bias: t[2], inputShift: t[3], silu: true)
        }
        XCTAssertLessThan(additive, 1e-2)
        let all = gradientCheckError([x, weight, bias, a, b, a * 0.5], delta: 1e-2) { t in
            t[0].groupNormConditioned(groups: 4, weight: t[1], bias: t[2], inputShift: t[5], scale: t[3], shift: t[4], silu: true)
        }
        XCTAssertLessThan(all, 1e-2)
        let plain = gradientCheckError([x], delta: 1e-2) { t in
            t[0].groupNormConditioned(groups: 1, weight: nil, bias: nil, silu: false)
        }
        XCTAssertLessThan(plain, 1e-2)
    }

    /// The fused backward equals the composite ops' gradients (recorded op by op) to float rounding, on a shape with
    /// vector tails (15 positions per channel) and channels spanning several groups; only the operands that ask for
    /// a gradient get one.
    func testFusedGradientsMatchTheComposite() {
        let (x, weight, bias, a, b) = inputs(4, n: 3, c: 8, h: 5, w: 3)
        let t = a * 0.3
        let probe = withNoGrad { Tensor.randn(x.shape, using: &Self.rng) }
        func grads(fused: Bool) -> [Tensor?] {
            let leaves = [x, weight, bias, a, b, t].map { v -> Tensor in let c = v.clone(); c.requiresGrad = true; return c }
            leaves[2].requiresGrad = false  // bias: no gradient asked
            let y = withGrad { () -> Tensor in
                fused ? leaves[0].groupNormConditioned(groups: 4, weight: leaves[1], bias: leaves[2], inputShift: leaves[5],
                                                       scale: leaves[3], shift: leaves[4], silu: true)
                      : leaves[0].composite(groups: 4, weight: leaves[1], bias: leaves[2], eps: 1e-5, inputShift: leaves[5],
                                            scale: leaves[3], shift: leaves[4], silu: true)
            }
            withGrad { (y * probe).sum() }.backward()
            return leaves.map(\.grad)
        }
        let fused = grads(fused: true), reference = grads(fused: false)
        XCTAssertNil(fused[2])
        for (k, (f, r)) in zip(fused, reference).enumerated() where k != 2 {
            guard let f, let r else { return XCTFail("operand \(k): no gradient") }
            XCTAssertEqual(f.shape, r.shape)
            let scale = r.toArray().map(abs).max()!
            let worst = zip(f.toArray(), r.toArray()).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 1e-4 * Swift.max(scale, 1), "operand \(k)")
        }
    }

    private static var rng = Philox(seed: 99)
}

private extension Tensor {
    /// `groupNormConditioned` as separate recorded ops, each with its own backward: the reference for the fused one.
    func composite(groups: Int, weight: Tensor?, bias: Tensor?, eps: Float, inputShift: Tensor?, scale: Tensor?,
                   shift: Tensor?, silu: Bool) -> Tensor {
        let n = shape[0], c = shape[1]
        let perChannel = [n, c] + [Int](repeating: 1, count: rank - 2)
        var h = self
        if let inputShift { h = h + inputShift.reshaped(perChannel) }
        h = h.groupNorm(groups: groups, weight: weight, bias: bias, eps: eps)
        if let scale { h = h * (scale.reshaped(perChannel) + 1) }
        if let shift { h = h + shift.reshaped(perChannel) }
        return silu ? h.silu() : h
    }
}
