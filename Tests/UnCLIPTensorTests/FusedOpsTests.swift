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

    /// While recording, the op runs the composite, so gradients flow to every operand.
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
    }
}
