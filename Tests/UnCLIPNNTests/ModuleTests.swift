import Foundation
import XCTest
@testable import UnCLIPNN

// A miniature diffusers-style UNet tree: nested modules, module arrays with parameter-less members, optional
// children and tensors, a renamed key, a buffer excluded from the parameters, and a subclass chain.

private final class TimestepEmbedding: Module {
    let linear_1 = Linear(4, 8)
    let linear_2 = Linear(8, 8)
}

private final class ResnetBlock: Module {
    let norm1: GroupNorm
    let conv1: Conv2d
    let time_emb_proj = Linear(8, 4)
    let conv_shortcut: Conv2d?
    init(_ cin: Int, _ cout: Int) {
        norm1 = GroupNorm(groups: 2, channels: cin)
        conv1 = Conv2d(cin, cout, kernelSize: 3, padding: 1)
        conv_shortcut = cin == cout ? nil : Conv2d(cin, cout, kernelSize: 1)
    }
}

private class AttentionBase: Module {
    let to_q = Linear(4, 4, bias: false)
    let to_k = Linear(4, 4, bias: false)
}

/// Subclass: its own properties come after the base class's.
private final class Attention: AttentionBase {
    let to_v = Linear(4, 4, bias: false)
    let to_out: [Module] = [Linear(4, 4), Dropout(p: 0)]
    let norm_cross: LayerNorm? = nil
}

private final class DownBlock: Module {
    let resnets: [ResnetBlock]
    let attentions: [Attention]
    let downsamplers: [Conv2d]?
    init(_ cin: Int, _ cout: Int, attention: Bool, down: Bool) {
        resnets = [ResnetBlock(cin, cout), ResnetBlock(cout, cout)]
        attentions = attention ? [Attention(), Attention()] : []
        downsamplers = down ? [Conv2d(cout, cout, kernelSize: 3, stride: 2, padding: 1)] : nil
    }
}

private final class TinyUNet: Module {
    let conv_in = Conv2d(3, 4, kernelSize: 3, padding: 1)
    let time_embedding = TimestepEmbedding()
    let down_blocks = [DownBlock(4, 4, attention: false, down: true), DownBlock(4, 4, attention: true, down: false)]
    let class_embedding: Embedding? = nil
    let normOut = GroupNorm(groups: 2, channels: 4)
    let conv_out = Conv2d(4, 3, kernelSize: 3, padding: 1)
    let positional_embedding = Tensor.zeros([1, 6])
    let optional_tensor: Tensor? = nil
    let causalMask = Tensor.zeros([6, 6])
    let layerCount = 2

    override var keyOverrides: [String: String] { ["normOut": "conv_norm_out"] }
    override var nonParameterLabels: Set<String> { ["causalMask"] }
}

private let expectedUNetKeys: [String] = {
    func resnet(_ p: String, shortcut: Bool) -> [String] {
        ["\(p).norm1.weight", "\(p).norm1.bias", "\(p).conv1.weight", "\(p).conv1.bias",
         "\(p).time_emb_proj.weight", "\(p).time_emb_proj.bias"]
            + (shortcut ? ["\(p).conv_shortcut.weight", "\(p).conv_shortcut.bias"] : [])
    }
    func attention(_ p: String) -> [String] {
        ["\(p).to_q.weight", "\(p).to_k.weight", "\(p).to_v.weight", "\(p).to_out.0.weight", "\(p).to_out.0.bias"]
    }
    var keys = ["conv_in.weight", "conv_in.bias",
                "time_embedding.linear_1.weight", "time_embedding.linear_1.bias",
                "time_embedding.linear_2.weight", "time_embedding.linear_2.bias"]
    keys += resnet("down_blocks.0.resnets.0", shortcut: false) + resnet("down_blocks.0.resnets.1", shortcut: false)
    keys += ["down_blocks.0.downsamplers.0.weight", "down_blocks.0.downsamplers.0.bias"]
    keys += resnet("down_blocks.1.resnets.0", shortcut: false) + resnet("down_blocks.1.resnets.1", shortcut: false)
    keys += attention("down_blocks.1.attentions.0") + attention("down_blocks.1.attentions.1")
    keys += ["conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias", "positional_embedding"]
    return keys
}()

/// A two-layer module with a shortcut that differs in channel count, for optional-child checks.
private final class Pair: Module {
    let a = ResnetBlock(2, 4)
    let shared: Tensor
    let again: Tensor
    override init() {
        shared = Tensor.ones([3])
        again = shared
    }
}

final class ModuleTests: XCTestCase {
    func testDiscoveryGivesExactPyTorchKeysInDeclarationOrder() {
        let unet = TinyUNet()
        XCTAssertEqual(unet.namedParameters().map(\.0), expectedUNetKeys)
    }

    func testShapesFollowPyTorchLayouts() {
        let params = Dictionary(uniqueKeysWithValues: TinyUNet().namedParameters().map { ($0.0, $0.1.shape) })
        XCTAssertEqual(params["conv_in.weight"], [4, 3, 3, 3])                 // OIHW
        XCTAssertEqual(params["time_embedding.linear_1.weight"], [8, 4])       // [out, in]
        XCTAssertEqual(params["down_blocks.1.attentions.0.to_out.0.bias"], [4])
    }

    func testChildrenAndNamedModules() {
        let unet = TinyUNet()
        XCTAssertEqual(unet.children.map(\.0),
                       ["conv_in", "time_embedding", "down_blocks.0", "down_blocks.1", "conv_norm_out", "conv_out"])
        let paths = unet.namedModules().map(\.0)
        XCTAssertEqual(paths.first, "")
        XCTAssertTrue(paths.contains("down_blocks.1.attentions.1.to_out.1"))  // the parameter-less dropout
        XCTAssertTrue(paths.contains("down_blocks.0.downsamplers.0"))
        XCTAssertFalse(paths.contains { $0.hasPrefix("down_blocks.1.downsamplers") })
        XCTAssertTrue(unet.namedModules().first { $0.0 == "down_blocks.1.attentions.1.to_out.1" }?.1 is Dropout)
    }

    func testOptionalChildPresentWhenNonNil() {
        let keys = Pair().namedParameters().map(\.0)
        XCTAssertEqual(keys, ["a.norm1.weight", "a.norm1.bias", "a.conv1.weight", "a.conv1.bias",
                              "a.time_emb_proj.weight", "a.time_emb_proj.bias",
                              "a.conv_shortcut.weight", "a.conv_shortcut.bias", "shared", "again"])
    }

    func testSharedTensorsCountOnceInParameters() {
        let pair = Pair()
        XCTAssertEqual(pair.namedParameters().count, 10)
        XCTAssertEqual(pair.parameters().count, 9)
        let expected = 2 + 2 + (4 * 2 * 9 + 4) + (4 * 8 + 4) + (4 * 2 + 4) + 3
        XCTAssertEqual(pair.parameterCount, expected)
    }

    func testParameterCount() {
        let t = TimestepEmbedding()
        XCTAssertEqual(t.parameterCount, 8 * 4 + 8 + 8 * 8 + 8)
    }

    func testTrainEvalIsRecursive() {
        let unet = TinyUNet()
        XCTAssertTrue(unet.namedModules().allSatisfy { $0.1.training })
        unet.eval()
        XCTAssertTrue(unet.namedModules().allSatisfy { !$0.1.training })
        unet.down_blocks[1].train()
        XCTAssertFalse(unet.training)
        XCTAssertTrue(unet.down_blocks[1].attentions[0].to_out[1].training)
        XCTAssertFalse(unet.down_blocks[0].training)
    }

    func testRequiresGradAndZeroGrad() {
        let t = TimestepEmbedding()
        t.requiresGrad(true)
        XCTAssertTrue(t.parameters().allSatisfy(\.requiresGrad))
        XCTAssertEqual(t.trainableParameters().map(\.0), t.namedParameters().map(\.0))
        for p in t.parameters() { p.grad = .ones(p.shape) }
        t.zeroGrad()
        XCTAssertTrue(t.parameters().allSatisfy { $0.grad == nil })
        t.linear_2.requiresGrad(false)
        XCTAssertEqual(t.trainableParameters().map(\.0), ["linear_1.weight", "linear_1.bias"])
    }

    func testResetParametersIsDeterministicAndReplacesZeros() {
        let a = TinyUNet(), b = TinyUNet()
        var r1 = Philox(seed: 7), r2 = Philox(seed: 7)
        a.resetParameters(using: &r1)
        b.resetParameters(using: &r2)
        for ((ka, ta), (_, tb)) in zip(a.namedParameters(), b.namedParameters()) {
            XCTAssertEqual(ta.toArray(), tb.toArray(), ka)
        }
        XCTAssertNotEqual(a.conv_in.weight.toArray(), [Float](repeating: 0, count: a.conv_in.weight.count))
        XCTAssertEqual(a.normOut.weight?.toArray(), [1, 1, 1, 1])
        XCTAssertEqual(a.normOut.bias?.toArray(), [0, 0, 0, 0])
    }

    // MARK: Loading

    private func weights(for module: Module, fill: Float = 0.5) -> [String: Tensor] {
        var dict: [String: Tensor] = [:]
        for (k, t) in module.namedParameters() { dict[k] = Tensor.full(t.shape, fill) }
        return dict
    }

    func testLoadAssignsWithoutCopying() throws {
        let unet = TinyUNet()
        let w = weights(for: unet)
        try unet.load(w)
        for (k, t) in unet.namedParameters() {
            XCTAssertTrue(t.storage === w[k]!.storage, "\(k) was copied")
            XCTAssertEqual(t.toArray().first, 0.5)
        }
    }

    func testStateDictRoundTrip() throws {
        let a = TinyUNet()
        var rng = Philox(seed: 3)
        a.resetParameters(using: &rng)
        let b = TinyUNet()
        try b.load(a.stateDict())
        XCTAssertEqual(Set(a.stateDict().keys), Set(expectedUNetKeys))
        for ((_, ta), (_, tb)) in zip(a.namedParameters(), b.namedParameters()) { XCTAssertEqual(ta.toArray(), tb.toArray()) }
    }

    func testUnexpectedKeysAreListedWithHint() {
        let unet = TinyUNet()
        var w = weights(for: unet)
        w["down_blocks.1.attentions.0.to_q.bias"] = .zeros([4])
        w["text_model.embeddings.position_ids"] = .zeros([1, 6])
        XCTAssertThrowsError(try unet.load(w)) { error in
            guard case ModuleLoadingError.unexpectedKeys(let keys, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(keys, ["down_blocks.1.attentions.0.to_q.bias", "text_model.embeddings.position_ids"])
            let message = "\(error)"
            XCTAssertTrue(message.contains("2 unexpected keys"), message)
            XCTAssertTrue(message.contains("module 'down_blocks.1.attentions.0.to_q' (Linear) has no 'bias'"), message)
            XCTAssertTrue(message.contains("ignoring"), message)
        }
        // Nothing was assigned by the failed load.
        XCTAssertEqual(unet.conv_in.weight.toArray().first, 0)
        // Ignoring the extras explicitly makes the load succeed.
        XCTAssertNoThrow(try unet.load(w, ignoring: { $0.hasSuffix("position_ids") || $0.hasSuffix("to_q.bias") }))
    }

    func testPrefixMismatchHint() {
        let t = TimestepEmbedding()
        var w: [String: Tensor] = [:]
        for (k, p) in t.namedParameters() { w["model.time_embedding." + k] = .zeros(p.shape) }
        XCTAssertThrowsError(try t.load(w)) { error in
            XCTAssertTrue("\(error)".contains("prefix 'model.time_embedding.'"), "\(error)")
        }
        XCTAssertNoThrow(try t.load(w.scoped("model.time_embedding.")))
    }

    func testMissingKeys() {
        let unet = TinyUNet()
        var w = weights(for: unet)
        w["conv_out.bias"] = nil
        w["down_blocks.0.resnets.1.norm1.weight"] = nil
        XCTAssertThrowsError(try unet.load(w)) { error in
            XCTAssertEqual(error as? ModuleLoadingError,
                           .missingKeys(["down_blocks.0.resnets.1.norm1.weight", "conv_out.bias"],
                                        hint: "hint: the weights have similarly named keys: down_blocks.0.resnets.0.norm1.weight, down_blocks.1.resnets.0.norm1.weight, down_blocks.1.resnets.1.norm1.weight"))
            XCTAssertTrue("\(error)".hasPrefix("2 parameters missing from the weights:\n  down_blocks.0.resnets.1.norm1.weight\n  conv_out.bias"), "\(error)")
        }
    }

    func testShapeMismatchNamesKeyAndShapes() {
        let unet = TinyUNet()
        var w = weights(for: unet)
        w["time_embedding.linear_2.weight"] = .zeros([8, 4])
        XCTAssertThrowsError(try unet.load(w)) { error in
            XCTAssertEqual(error as? ModuleLoadingError, .shapeMismatch(key: "time_embedding.linear_2.weight", expected: [8, 8], found: [8, 4]))
            XCTAssertEqual("\(error)", "shape mismatch for 'time_embedding.linear_2.weight': the module expects [8, 8], the weights have [8, 4]")
        }
        XCTAssertEqual(unet.time_embedding.linear_1.weight.toArray().first, 0)
    }

    func testLongKeyListsAreTruncated() {
        let e = ModuleLoadingError.unexpectedKeys((0..<25).map { "k\($0)" }, hint: "")
        XCTAssertTrue(e.description.contains("  k9\n  … and 15 more"), e.description)
        XCTAssertFalse(e.description.contains("k10"))
    }

    func testSaveAndLoadThroughSafeTensorsFile() throws {
        let a = TinyUNet()
        var rng = Philox(seed: 21)
        a.resetParameters(using: &rng)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nn-module-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensors.write(a.stateDict(), to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        let b = TinyUNet()
        try b.load(file)
        for ((k, ta), (_, tb)) in zip(a.namedParameters(), b.namedParameters()) { XCTAssertEqual(ta.toArray(), tb.toArray(), k) }
        // A sub-module loads from the same file through a scope.
        let emb = TimestepEmbedding()
        try emb.load(file.scoped("time_embedding."))
        XCTAssertEqual(emb.linear_2.bias!.toArray(), a.time_embedding.linear_2.bias!.toArray())
    }
}
