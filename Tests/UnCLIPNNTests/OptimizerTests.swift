import Foundation
import XCTest
@testable import UnCLIPNN

final class OptimizerTests: XCTestCase {
    // MARK: AdamW

    /// Three AdamW steps against torch.optim.AdamW, with one parameter lacking a gradient at step 2.
    func testAdamWMatchesPyTorch() throws {
        let fixture = try loadFixture("adamw")
        for case_ in fixture["cases"] as! [[String: Any]] {
            let c = case_["config"] as! [String: Double]
            let initial = (case_["initial"] as! [Any]).map { fixtureTensor($0) }
            let p0 = initial[0], p1 = initial[1]
            let opt = AdamW([("p0", p0), ("p1", p1)], learningRate: Float(c["lr"]!),
                            betas: (Float(c["beta1"]!), Float(c["beta2"]!)), eps: Float(c["eps"]!),
                            weightDecay: Float(c["weight_decay"]!))
            for (s, step) in (case_["steps"] as! [[String: Any]]).enumerated() {
                let grads = step["grads"] as! [Any]
                p0.grad = fixtureTensor(grads[0])
                p1.grad = grads[1] is NSNull ? nil : fixtureTensor(grads[1])
                opt.step()
                let expected = (step["params"] as! [Any]).map { fixtureTensor($0) }
                XCTAssertLessThan(maxAbsDifference(p0, expected[0]), 1e-6, "p0 after step \(s + 1), \(c)")
                XCTAssertLessThan(maxAbsDifference(p1, expected[1]), 1e-6, "p1 after step \(s + 1), \(c)")
            }
            let state = case_["final_state_p0"] as! [String: Any]
            XCTAssertEqual(opt.stepCount(of: "p0"), state["step"] as? Int)
            XCTAssertEqual(opt.stepCount(of: "p1"), case_["final_step_p1"] as? Int)
            let saved = opt.stateTensors()
            XCTAssertLessThan(maxAbsDifference(saved["p0.exp_avg"]!, fixtureTensor(state["exp_avg"])), 1e-6)
            XCTAssertLessThan(maxAbsDifference(saved["p0.exp_avg_sq"]!, fixtureTensor(state["exp_avg_sq"])), 1e-6)
        }
    }

    func testAdamWResumeIsBitExact() throws {
        func grads(_ step: Int) -> [Tensor] {
            var rng = Philox(seed: 100, stream: UInt64(step))
            return [Tensor.randn([4, 3], using: &rng), Tensor.randn([3], using: &rng)]
        }
        func fresh() -> [Tensor] {
            var rng = Philox(seed: 1)
            return [Tensor.randn([4, 3], using: &rng), Tensor.randn([3], using: &rng)]
        }
        // Uninterrupted: 4 steps.
        let a = fresh()
        let optA = AdamW([("w", a[0]), ("b", a[1])], learningRate: 0.05, weightDecay: 0.01)
        for s in 0..<4 { let g = grads(s); a[0].grad = g[0]; a[1].grad = g[1]; optA.step() }
        // Interrupted after 2 steps: save parameters and optimizer state, rebuild everything, continue.
        let b = fresh()
        let optB = AdamW([("w", b[0]), ("b", b[1])], learningRate: 0.05, weightDecay: 0.01)
        for s in 0..<2 { let g = grads(s); b[0].grad = g[0]; b[1].grad = g[1]; optB.step() }
        let savedState = optB.stateTensors()
        let savedParams = [b[0].clone(), b[1].clone()]
        XCTAssertEqual(savedState["w.step"]?.item, 2)
        let c = savedParams
        let optC = AdamW([("w", c[0]), ("b", c[1])], learningRate: 0.05, weightDecay: 0.01)
        try optC.loadState(savedState)
        for s in 2..<4 { let g = grads(s); c[0].grad = g[0]; c[1].grad = g[1]; optC.step() }
        XCTAssertEqual(c[0].toArray(), a[0].toArray())
        XCTAssertEqual(c[1].toArray(), a[1].toArray())
    }

    func testAdamWLoadStateRejectsForeignAndPartialState() {
        let p = Tensor.zeros([2])
        let opt = AdamW([("p", p)])
        XCTAssertThrowsError(try opt.loadState(["q.step": Tensor(scalar: 1)])) { error in
            guard case ModuleLoadingError.unexpectedKeys(let keys, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(keys, ["q.step"])
        }
        XCTAssertThrowsError(try opt.loadState(["p.step": Tensor(scalar: 1), "p.exp_avg": .zeros([2])])) { error in
            XCTAssertEqual(error as? ModuleLoadingError, .missingKeys(["p.exp_avg_sq"], hint: "hint: a parameter's state needs its step and both moments"))
        }
        XCTAssertThrowsError(try opt.loadState(["p.step": Tensor(scalar: 1), "p.exp_avg": .zeros([3]), "p.exp_avg_sq": .zeros([2])])) { error in
            XCTAssertEqual(error as? ModuleLoadingError, .shapeMismatch(key: "p.exp_avg", expected: [2], found: [3]))
        }
    }

    func testAdamWDoesNotWriteLoadedMemory() throws {
        let layer = Linear(2, 1)
        let source = Tensor.full([1, 2], 1)
        try layer.load(["weight": source, "bias": .zeros([1])])
        layer.requiresGrad()
        let opt = AdamW(layer, learningRate: 0.1)
        layer.weight.grad = .ones([1, 2]); layer.bias!.grad = .ones([1])
        opt.step()
        XCTAssertEqual(source.toArray(), [1, 1])
        XCTAssertNotEqual(layer.weight.toArray(), [1, 1])
    }

    /// A model loaded for inference has read-only weights (the engine then skips re-checking its cached copies);
    /// training it again starts from writable copies, leaving the loaded memory read-only and unchanged.
    func testAdamWTrainsReadOnlyWeightsThroughCopies() {
        let layer = Linear(2, 1)
        layer.markParametersReadOnly()
        let loaded = layer.weight.storage
        XCTAssertTrue(loaded.isReadOnly)
        layer.requiresGrad()
        let opt = AdamW(layer, learningRate: 0.1)
        XCTAssertFalse(layer.weight.storage.isReadOnly)
        XCTAssertFalse(layer.weight.storage === loaded)
        let before = Array(UnsafeBufferPointer(start: loaded.base, count: loaded.count))
        layer.weight.grad = .ones([1, 2]); layer.bias!.grad = .ones([1])
        opt.step()
        XCTAssertEqual(Array(UnsafeBufferPointer(start: loaded.base, count: loaded.count)), before)
        XCTAssertNotEqual(layer.weight.toArray(), before)
    }

    // MARK: Gradient clipping

    func testClipGradNormByHand() {
        let a = Tensor.zeros([2]), b = Tensor.zeros([2]), c = Tensor.zeros([1])
        a.grad = Tensor(shape: [2], [3, 0])
        b.grad = Tensor(shape: [2], [0, 4])
        // c has no gradient and is skipped. Joint norm √(9 + 16) = 5.
        let norm = clipGradNorm([a, b, c], maxNorm: 1)
        XCTAssertEqual(norm, 5, accuracy: 1e-6)
        let scale: Float = 1 / (5 + 1e-6)
        XCTAssertEqual(a.grad!.toArray()[0], 3 * scale, accuracy: 1e-7)
        XCTAssertEqual(b.grad!.toArray()[1], 4 * scale, accuracy: 1e-7)
        XCTAssertNil(c.grad)
        // Already under the limit: unchanged.
        let norm2 = clipGradNorm([a, b], maxNorm: 10)
        XCTAssertEqual(norm2, 1, accuracy: 1e-5)
        XCTAssertEqual(a.grad!.toArray()[0], 3 * scale, accuracy: 1e-7)
        // Infinity norm: largest magnitude.
        a.grad = Tensor(shape: [2], [-6, 1])
        XCTAssertEqual(clipGradNorm([a, b], maxNorm: 3, normType: .infinity), 6)
        XCTAssertEqual(a.grad!.toArray()[0], -3, accuracy: 1e-5)
    }

    // MARK: EMA

    func testEMAUpdateMathAndDecaySchedules() {
        final class One: Module { let w = Tensor.full([2], 0) }
        let m = One()
        m.requiresGrad()
        let ema = EMA(m, decay: 0.5, schedule: .constant)
        // Update 1 copies (decay 0, as diffusers' get_decay at step 1).
        m.w.copyValues(from: Tensor(shape: [2], [4, 8]))
        XCTAssertEqual(ema.update(), 0)
        XCTAssertEqual(ema.shadow[0].toArray(), [4, 8])
        // Update 2 averages with decay 0.5.
        m.w.copyValues(from: Tensor(shape: [2], [0, 0]))
        XCTAssertEqual(ema.update(), 0.5)
        XCTAssertEqual(ema.shadow[0].toArray(), [2, 4])

        let d = EMA(m, decay: 0.9999, schedule: .diffusers)
        XCTAssertEqual(d.decay(atUpdate: 1), 0)
        XCTAssertEqual(d.decay(atUpdate: 2), 2.0 / 11.0, accuracy: 1e-12)   // k = 1: (1 + 1)/(10 + 1)
        XCTAssertEqual(d.decay(atUpdate: 1_000_000), 0.9999)
        let w = EMA(m, decay: 0.999, minDecay: 0.1, updateAfterStep: 5, schedule: .warmup(invGamma: 1, power: 2.0 / 3.0))
        XCTAssertEqual(w.decay(atUpdate: 6), 0)
        XCTAssertEqual(w.decay(atUpdate: 7), Swift.max(0.1, 1 - pow(2.0, -2.0 / 3.0)), accuracy: 1e-12)
        XCTAssertEqual(w.decay(atUpdate: 10_000_000), 0.999)
    }

    func testEMASwapCopyAndFrozenParameters() throws {
        final class Two: Module { let a = Tensor.full([1], 1); let frozen = Tensor.full([1], 1) }
        let m = Two()
        m.a.requiresGrad = true
        let ema = EMA(m, decay: 0.5, schedule: .constant)
        ema.update()
        m.a.copyValues(from: .full([1], 3)); m.frozen.copyValues(from: .full([1], 7))
        ema.update()
        XCTAssertEqual(ema.shadow[0].item, 2)     // 1 − 0.5·(1 − 3)
        XCTAssertEqual(ema.shadow[1].item, 7)     // frozen: copied
        ema.swapWithModel()
        XCTAssertEqual(m.a.item, 2); XCTAssertEqual(ema.shadow[0].item, 3)
        ema.swapWithModel()
        XCTAssertEqual(m.a.item, 3)
        let saved = ema.stateDict().mapValues { $0.clone() }
        ema.copyToModel()
        XCTAssertEqual(m.a.item, 2)
        let restored = EMA(m, decay: 0.5, schedule: .constant)
        try restored.load(saved, updateCount: ema.updateCount)
        XCTAssertEqual(restored.shadow[0].item, 2)
        XCTAssertEqual(restored.updateCount, 2)
    }

    // MARK: Schedules

    func testWarmupCosineEndpoints() {
        let s = LearningRateSchedule.warmupCosine(baseLR: 1e-3, warmupSteps: 10, totalSteps: 110, minLR: 1e-5)
        XCTAssertEqual(s(0), 0)
        XCTAssertEqual(s(5), 5e-4, accuracy: 1e-9)
        XCTAssertEqual(s(10), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(s(60), (1e-3 + 1e-5) / 2, accuracy: 1e-9)   // halfway down the cosine
        XCTAssertEqual(s(110), 1e-5, accuracy: 1e-9)
        XCTAssertEqual(s(500), 1e-5, accuracy: 1e-9)
        let noWarmup = LearningRateSchedule.warmupCosine(baseLR: 2, warmupSteps: 0, totalSteps: 4)
        XCTAssertEqual(noWarmup(0), 2)
        XCTAssertEqual(noWarmup(4), 0, accuracy: 1e-7)
        XCTAssertEqual(LearningRateSchedule.warmupConstant(1, warmupSteps: 4)(2), 0.5)
        XCTAssertEqual(LearningRateSchedule.constant(0.3)(1000), 0.3)
    }

    // MARK: End to end

    func testTinyMLPLearns() {
        final class MLP: Module {
            let fc1 = Linear(2, 32)
            let fc2 = Linear(32, 1)
            func callAsFunction(_ x: Tensor) -> Tensor { fc2(fc1(x).silu()) }
        }
        let model = MLP()
        var rng = Philox(seed: 0)
        model.resetParameters(using: &rng)
        model.requiresGrad()
        // Target: y = x₀·x₁ on 64 random points in [−1, 1]².
        let x = Tensor.rand([64, 2], using: &rng) * 2 - 1
        let xs = x.toArray()
        let y = Tensor(shape: [64, 1], (0..<64).map { xs[2 * $0] * xs[2 * $0 + 1] })
        let schedule = LearningRateSchedule.warmupCosine(baseLR: 0.02, warmupSteps: 5, totalSteps: 200)
        let opt = AdamW(model, learningRate: 0.02, weightDecay: 0)
        func loss() -> Tensor { let d = model(x) - y; return (d * d).mean() }
        let initial = withNoGrad { loss() }.item
        for step in 0..<200 {
            opt.learningRate = schedule(step)
            opt.zeroGrad()
            let l = withGrad { loss() }
            l.backward()
            clipGradNorm(model, maxNorm: 1)
            opt.step()
        }
        let final = withNoGrad { loss() }.item
        XCTAssertLessThan(final, initial * 0.2, "loss \(initial) → \(final)")
    }
}
