#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Adam with decoupled weight decay, step for step like `torch.optim.AdamW`.
///
/// For each parameter with a gradient, at its step t (counted per parameter, as PyTorch does):
///
///     p ← p · (1 − lr·λ)                              // decoupled weight decay, before the Adam update
///     m ← m + (1 − β₁)(g − m)                          // torch.lerp_
///     v ← β₂·v + (1 − β₂)·g²
///     p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
///
/// The update runs in place on the parameters' memory with plain vectorised loops (no graph). Parameters without
/// a gradient are skipped and their step count does not advance. `stateTensors()` / `loadState(_:)` save and
/// restore the step counts and moments for an exact resume.
public final class AdamW {
    /// The learning rate; set it before each `step()` to follow a schedule.
    public var learningRate: Float
    /// β₁ and β₂, the decay rates of the first and second moment estimates.
    public var betas: (Float, Float)
    /// Added to the denominator for numerical stability.
    public var eps: Float
    /// The decoupled weight-decay coefficient λ.
    public var weightDecay: Float
    /// The parameters updated, with the names their state is saved under.
    public let parameters: [(name: String, tensor: Tensor)]

    /// Per-parameter state, created at a parameter's first step (like PyTorch's lazy state).
    private final class ParameterState {
        var step: Int
        let expAvg: Tensor
        let expAvgSq: Tensor
        init(step: Int, expAvg: Tensor, expAvgSq: Tensor) { self.step = step; self.expAvg = expAvg; self.expAvgSq = expAvgSq }
    }
    private var states: [ParameterState?]

    /// An optimizer for `parameters` (name, tensor); defaults are PyTorch's.
    ///
    /// Each parameter is given its own writable copy of its values first: parameters loaded from a memory-mapped
    /// file view read-only memory that an in-place update must not touch. (Views made of a parameter before this
    /// call keep the old memory.)
    public init(_ parameters: [(String, Tensor)], learningRate: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999),
                eps: Float = 1e-8, weightDecay: Float = 1e-2) {
        precondition(Set(parameters.map(\.0)).count == parameters.count, "AdamW: duplicate parameter names")
        self.parameters = parameters.map { (name: $0.0, tensor: $0.1) }
        self.learningRate = learningRate
        self.betas = betas
        self.eps = eps
        self.weightDecay = weightDecay
        self.states = Array(repeating: nil, count: parameters.count)
        for (_, p) in parameters { p.assign(p.clone()) }
    }

    /// An optimizer for the module's trainable parameters (those with `requiresGrad`), named by their keys.
    public convenience init(_ module: Module, learningRate: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999),
                            eps: Float = 1e-8, weightDecay: Float = 1e-2) {
        self.init(module.trainableParameters(), learningRate: learningRate, betas: betas, eps: eps, weightDecay: weightDecay)
    }

    /// Applies one update to every parameter that has a gradient.
    public func step() {
        let (beta1, beta2) = betas
        for (i, (_, p)) in parameters.enumerated() {
            guard let grad = p.grad else { continue }
            precondition(grad.shape == p.shape, "AdamW: gradient \(grad.shape) for parameter \(p.shape)")
            let state = states[i] ?? {
                let s = ParameterState(step: 0, expAvg: .zeros(p.shape), expAvgSq: .zeros(p.shape))
                states[i] = s
                return s
            }()
            state.step += 1
            // Matches torch.optim.adamw (single-tensor path): scalar factors are computed in double precision, then
            // applied as float32, in the same order of operations.
            let t = Double(state.step)
            let decay = Float(1 - Double(learningRate) * Double(weightDecay))
            let biasCorrection1 = 1 - pow(Double(beta1), t)
            let biasCorrection2Sqrt = Float((1 - pow(Double(beta2), t)).squareRoot())
            let stepSize = Float(Double(learningRate) / biasCorrection1)
            let oneMinusBeta1 = Float(1 - Double(beta1)), oneMinusBeta2 = Float(1 - Double(beta2))
            // With λ = 0 PyTorch skips the decay; multiplying by exactly 1 is the same and keeps the loop branch-free.
            let b2 = beta2, epsilon = eps
            let pp = p.data, gp = grad.data, mp = state.expAvg.data, vp = state.expAvgSq.data
            parallelFor(p.count, grain: 65_536) { range in
                for j in range {
                    let g = gp[j]
                    let x = pp[j] * decay
                    let m = mp[j] + oneMinusBeta1 * (g - mp[j])
                    let v = vp[j] * b2 + oneMinusBeta2 * g * g
                    let denom = v.squareRoot() / biasCorrection2Sqrt + epsilon
                    mp[j] = m
                    vp[j] = v
                    pp[j] = x + (-stepSize) * m / denom
                }
            }
        }
    }

    /// Drops every parameter's gradient.
    public func zeroGrad() {
        for (_, p) in parameters { p.grad = nil }
    }

    /// Number of updates applied to the named parameter so far (0 before its first gradient).
    public func stepCount(of name: String) -> Int {
        guard let i = parameters.firstIndex(where: { $0.name == name }) else { return 0 }
        return states[i]?.step ?? 0
    }

    /// The optimizer state as named tensors for saving: `<name>.step` (a scalar), `<name>.exp_avg`, `<name>.exp_avg_sq`.
    ///
    /// Parameters that have not been stepped yet have no entries. The step is stored as a Float32, exact up to 2²⁴ steps.
    public func stateTensors() -> [String: Tensor] {
        var dict: [String: Tensor] = [:]
        for ((name, _), state) in zip(parameters, states) {
            guard let state else { continue }
            dict[name + ".step"] = Tensor(scalar: Float(state.step))
            dict[name + ".exp_avg"] = state.expAvg.clone()
            dict[name + ".exp_avg_sq"] = state.expAvgSq.clone()
        }
        return dict
    }

    /// Restores state saved by `stateTensors()`; parameters absent from `source` start fresh.
    ///
    /// Throws when a name in the source belongs to no parameter, when a moment's shape differs from its parameter's,
    /// when a parameter has only part of its state, when a value is not finite or a step count not a whole number.
    /// Nothing changes when it throws.
    public func loadState(_ source: some WeightSource) throws {
        let suffixes = [".step", ".exp_avg", ".exp_avg_sq"]
        let known = Set(parameters.flatMap { p in suffixes.map { p.name + $0 } })
        let unexpected = source.names.filter { !known.contains($0) }
        if !unexpected.isEmpty {
            throw ModuleLoadingError.unexpectedKeys(unexpected, hint: "hint: the optimizer state belongs to other parameters")
        }
        var restored: [ParameterState?] = []
        for (name, p) in parameters {
            let present = suffixes.filter { source.shape(of: name + $0) != nil }
            if present.isEmpty { restored.append(nil); continue }
            if present.count != suffixes.count {
                throw ModuleLoadingError.missingKeys(suffixes.filter { !present.contains($0) }.map { name + $0 },
                                                     hint: "hint: a parameter's state needs its step and both moments")
            }
            func read(_ key: String, shape: [Int]) throws -> Tensor {
                let t: Tensor
                do { t = try source.tensor(key) } catch { throw ModuleLoadingError.unreadable(key: key, reason: "\(error)") }
                guard t.shape == shape else { throw ModuleLoadingError.shapeMismatch(key: key, expected: shape, found: t.shape) }
                if let i = t.firstNonFiniteIndex() { throw ModuleLoadingError.nonFinite(key: key, index: i, value: t.data[i]) }
                return t
            }
            // The step is stored as a float (the checkpoint is all f32): it must be a whole, non-negative count.
            let step = try read(name + ".step", shape: []).item
            guard step.isFinite, step >= 0, step <= Float(1 << 40), step.rounded() == step else {
                throw ModuleLoadingError.unreadable(key: name + ".step", reason: "the step count is \(step), not a whole number of steps")
            }
            restored.append(ParameterState(step: Int(step), expAvg: try read(name + ".exp_avg", shape: p.shape).clone(),
                                           expAvgSq: try read(name + ".exp_avg_sq", shape: p.shape).clone()))
        }
        states = restored
    }
}
