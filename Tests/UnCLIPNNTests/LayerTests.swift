import Foundation
import XCTest
@testable import UnCLIPNN

/// Reads a JSON fixture written by Scripts/make_nn_fixtures.py (this test target declares no resources).
func loadFixture(_ name: String) throws -> [String: Any] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name).json")
    let data = try Data(contentsOf: url)
    guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw CocoaError(.fileReadCorruptFile)
    }
    return object
}

/// A fixture tensor {"shape": [...], "data": [...]}.
func fixtureTensor(_ any: Any?) -> Tensor {
    let dict = any as! [String: Any]
    let shape = (dict["shape"] as! [NSNumber]).map(\.intValue)
    let values = (dict["data"] as! [NSNumber]).map(\.floatValue)
    return Tensor(shape: shape, values)
}

/// The largest absolute difference between two tensors of the same shape.
func maxAbsDifference(_ a: Tensor, _ b: Tensor, file: StaticString = #filePath, line: UInt = #line) -> Float {
    XCTAssertEqual(a.shape, b.shape, file: file, line: line)
    guard a.shape == b.shape else { return .infinity }
    return zip(a.toArray(), b.toArray()).map { Swift.abs($0 - $1) }.max() ?? 0
}

final class LayerTests: XCTestCase {
    var fixtures: [String: Any] = [:]

    override func setUpWithError() throws {
        fixtures = try loadFixture("layers")
    }

    private func case_(_ name: String) -> [String: Any] { fixtures[name] as! [String: Any] }

    func testLinearMatchesPyTorch() throws {
        let f = case_("linear")
        let layer = Linear(5, 3)
        try layer.load(["weight": fixtureTensor(f["weight"]), "bias": fixtureTensor(f["bias"])])
        let y = withNoGrad { layer(fixtureTensor(f["input"])) }
        XCTAssertLessThan(maxAbsDifference(y, fixtureTensor(f["output"])), 1e-5)
    }

    func testLinearWithoutBiasHasOnlyWeight() {
        XCTAssertEqual(Linear(5, 3, bias: false).namedParameters().map(\.0), ["weight"])
    }

    func testConv2dMatchesPyTorch() throws {
        let f = case_("conv2d")
        let layer = Conv2d(3, 4, kernelSize: 3, stride: f["stride"] as! Int, padding: f["padding"] as! Int)
        try layer.load(["weight": fixtureTensor(f["weight"]), "bias": fixtureTensor(f["bias"])])
        let y = withNoGrad { layer(fixtureTensor(f["input"])) }
        XCTAssertLessThan(maxAbsDifference(y, fixtureTensor(f["output"])), 1e-5)
    }

    func testEmbeddingMatchesPyTorch() throws {
        let f = case_("embedding")
        let layer = Embedding(10, 4)
        try layer.load(["weight": fixtureTensor(f["weight"])])
        let ids = f["ids"] as! [[Int]]
        let idTensor = Tensor(shape: [ids.count, ids[0].count], ids.flatMap { $0.map(Float.init) })
        let expected = fixtureTensor(f["output"])
        XCTAssertEqual(withNoGrad { layer(idTensor) }.toArray(), expected.toArray())
        XCTAssertEqual(withNoGrad { layer(idTensor) }.shape, [2, 3, 4])
        XCTAssertEqual(withNoGrad { layer(ids: ids[1]) }.toArray(), Array(expected.toArray()[12...]))
    }

    func testGroupNormMatchesPyTorch() throws {
        let f = case_("group_norm")
        let layer = GroupNorm(groups: f["groups"] as! Int, channels: 6)
        try layer.load(["weight": fixtureTensor(f["weight"]), "bias": fixtureTensor(f["bias"])])
        let y = withNoGrad { layer(fixtureTensor(f["input"])) }
        XCTAssertLessThan(maxAbsDifference(y, fixtureTensor(f["output"])), 1e-5)
    }

    func testLayerNormMatchesPyTorch() throws {
        let f = case_("layer_norm")
        let layer = LayerNorm(8)
        try layer.load(["weight": fixtureTensor(f["weight"]), "bias": fixtureTensor(f["bias"])])
        let y = withNoGrad { layer(fixtureTensor(f["input"])) }
        XCTAssertLessThan(maxAbsDifference(y, fixtureTensor(f["output"])), 1e-5)
    }

    func testNormsWithoutAffineHaveNoParameters() {
        XCTAssertTrue(LayerNorm(8, affine: false).namedParameters().isEmpty)
        XCTAssertTrue(GroupNorm(groups: 2, channels: 4, affine: false).namedParameters().isEmpty)
    }

    // MARK: Initialisation

    func testLinearAndConvInitBoundsLikePyTorch() {
        var rng = Philox(seed: 11)
        let linear = Linear(64, 200)
        linear.resetParameters(using: &rng)
        let bound = 1 / Float(64).squareRoot()
        let w = linear.weight.toArray()
        XCTAssertTrue(w.allSatisfy { Swift.abs($0) <= bound })
        // Uniform on ±b has variance b²/3; 12 800 samples pin it to a few percent.
        let variance = w.map { $0 * $0 }.reduce(0, +) / Float(w.count)
        XCTAssertEqual(variance, bound * bound / 3, accuracy: bound * bound / 3 * 0.05)
        XCTAssertTrue(linear.bias!.toArray().allSatisfy { Swift.abs($0) <= bound })
        XCTAssertGreaterThan(linear.bias!.toArray().map { Swift.abs($0) }.max()!, bound * 0.8)

        let conv = Conv2d(8, 16, kernelSize: 3)
        conv.resetParameters(using: &rng)
        let convBound = 1 / Float(8 * 9).squareRoot()
        XCTAssertTrue(conv.weight.toArray().allSatisfy { Swift.abs($0) <= convBound })
        XCTAssertGreaterThan(conv.weight.toArray().map { Swift.abs($0) }.max()!, convBound * 0.95)
    }

    func testEmbeddingInitIsStandardNormal() {
        var rng = Philox(seed: 5)
        let e = Embedding(100, 100)
        e.resetParameters(using: &rng)
        let v = e.weight.toArray()
        let mean = v.reduce(0, +) / Float(v.count)
        let variance = v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(v.count)
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
    }

    func testResetReplacesLoadedStorageInsteadOfWritingIt() throws {
        let layer = Linear(2, 2)
        let loaded = Tensor.full([2, 2], 3)
        try layer.load(["weight": loaded, "bias": .zeros([2])])
        var rng = Philox(seed: 1)
        layer.resetParameters(using: &rng)
        XCTAssertEqual(loaded.toArray(), [3, 3, 3, 3])  // a memory-mapped file must never be written
        XCTAssertNotEqual(layer.weight.toArray(), [3, 3, 3, 3])
    }

    // MARK: Dropout

    func testDropoutIsIdentityInEvalAndForZeroProbability() {
        let x = Tensor(shape: [2, 3], [1, 2, 3, 4, 5, 6])
        let d = Dropout(p: 0.5)
        d.eval()
        XCTAssertTrue(d(x) === x)
        let zero = Dropout(p: 0)
        XCTAssertTrue(zero.training)
        XCTAssertTrue(zero(x) === x)
    }

    func testDropoutInTrainingZeroesAndRescales() {
        let x = Tensor.ones([10_000])
        let d = Dropout(p: 0.25, rng: Philox(seed: 9))
        let y = withNoGrad { d(x) }.toArray()
        XCTAssertTrue(y.allSatisfy { $0 == 0 || Swift.abs($0 - 4 / 3) < 1e-6 })
        let dropped = Float(y.filter { $0 == 0 }.count) / Float(y.count)
        XCTAssertEqual(dropped, 0.25, accuracy: 0.02)
        // Same seed, same mask; the layer's generator advances between calls.
        let again = Dropout(p: 0.25, rng: Philox(seed: 9))
        XCTAssertEqual(withNoGrad { again(x) }.toArray(), y)
        XCTAssertNotEqual(withNoGrad { again(x) }.toArray(), y)
    }

    func testDropoutGradientFollowsMask() {
        let x = Tensor(shape: [64], (0..<64).map { Float($0) / 10 + 1 })
        x.requiresGrad = true
        let d = Dropout(p: 0.5, rng: Philox(seed: 2))
        let y = withGrad { d(x) }
        withGrad { y.sum() }.backward()
        for (g, v) in zip(x.grad!.toArray(), y.toArray()) { XCTAssertEqual(g, v == 0 ? 0 : 2) }
    }

    func testSeedDropoutGivesReproducibleDistinctStreams() {
        final class Two: Module { let a = Dropout(p: 0.5); let b = Dropout(p: 0.5) }
        let m = Two(), n = Two()
        m.seedDropout(42); n.seedDropout(42)
        let x = Tensor.ones([256])
        let ma = withNoGrad { m.a(x) }.toArray(), mb = withNoGrad { m.b(x) }.toArray()
        XCTAssertEqual(ma, withNoGrad { n.a(x) }.toArray())
        XCTAssertNotEqual(ma, mb)
    }

    // MARK: Heads and activations

    func testSplitHeadsIsHeadMajorAndMergeInverts() {
        // [B=1, L=2, H·dh=6] with H=3, dh=2: head i owns channels [2i, 2i+2).
        let x = Tensor(shape: [1, 2, 6], (0..<12).map(Float.init))
        let s = splitHeads(x, heads: 3)
        XCTAssertEqual(s.shape, [1, 3, 2, 2])
        XCTAssertEqual(s.toArray(), [0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11])
        XCTAssertEqual(mergeHeads(s).toArray(), x.toArray())
        XCTAssertEqual(mergeHeads(s).shape, [1, 2, 6])
    }

    func testActivationConfigNames() throws {
        XCTAssertEqual(try Activation(configName: "silu"), .silu)
        XCTAssertEqual(try Activation(configName: "swish"), .silu)
        XCTAssertEqual(try Activation(configName: "gelu"), .gelu)
        XCTAssertEqual(try Activation(configName: "gelu_new"), .geluTanh)
        XCTAssertEqual(try Activation(configName: "gelu_pytorch_tanh"), .geluTanh)
        XCTAssertEqual(try Activation(configName: "quick_gelu"), .quickGELU)
        XCTAssertEqual(try Activation(configName: "relu"), .relu)
        XCTAssertThrowsError(try Activation(configName: "mish")) { error in
            XCTAssertEqual("\(error)", "unknown activation function 'mish'; accepted: gelu, gelu_new, gelu_pytorch_tanh, quick_gelu, relu, silu, swish")
        }
    }

    func testActivationsApplyTheirFunction() {
        let x = Tensor(shape: [3], [-1, 0.5, 2])
        func check(_ a: Activation, _ f: (Double) -> Double) {
            for (y, v) in zip(withNoGrad { a(x) }.toArray(), x.toArray()) {
                XCTAssertEqual(Double(y), f(Double(v)), accuracy: 1e-5, "\(a)")
            }
        }
        let sigmoid = { (v: Double) in 1 / (1 + Foundation.exp(-v)) }
        check(.silu) { $0 * sigmoid($0) }
        check(.gelu) { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }
        check(.geluTanh) { 0.5 * $0 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) }
        check(.quickGELU) { $0 * sigmoid(1.702 * $0) }
        check(.relu) { Swift.max($0, 0) }
    }
}
