#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exponential moving average of a module's parameters (shadow copies), like diffusers' `EMAModel`.
///
/// After each optimizer step call `update()`: every shadow tensor s moves toward its parameter p by
/// `s ← s − (1 − d)(s − p)` with the decay d of that step. Evaluate or save with the averaged weights via
/// `copyToModel()`, or `swapWithModel()` twice around an evaluation to keep training afterwards.
///
/// The decay d of update number n (1-based) follows diffusers' `EMAModel.get_decay`: with k = n − updateAfterStep − 1,
/// d = 0 while k ≤ 0 (the shadow copies the parameters), otherwise
/// `.constant`: d = decay; `.diffusers`: d = min(decay, (1 + k)/(10 + k)) (diffusers' default, a short ramp);
/// `.warmup(invGamma:power:)`: d = min(decay, 1 − (1 + k/invGamma)^−power) (diffusers' `use_ema_warmup`);
/// and then d = max(d, minDecay).
public final class EMA {
    /// How the decay ramps up over the first updates.
    public enum DecaySchedule: Equatable {
        case constant
        case diffusers
        case warmup(invGamma: Double, power: Double)
    }

    /// The largest decay used.
    public let decay: Double
    /// The smallest decay used after the first `updateAfterStep + 1` updates.
    public let minDecay: Double
    /// Updates before the averaging starts (the shadow copies the parameters until then).
    public let updateAfterStep: Int
    public let schedule: DecaySchedule
    /// Number of `update()` calls so far (diffusers' `optimization_step`).
    public private(set) var updateCount = 0
    /// The tracked parameters with their keys.
    public let parameters: [(name: String, tensor: Tensor)]
    /// The averaged values, aligned with `parameters`.
    public let shadow: [Tensor]

    /// Starts averaging `module`'s parameters (all of them, frozen ones included: those are copied, not averaged).
    public init(_ module: Module, decay: Double = 0.9999, minDecay: Double = 0, updateAfterStep: Int = 0,
                schedule: DecaySchedule = .diffusers) {
        var seen = Set<ObjectIdentifier>()
        parameters = module.namedParameters().filter { seen.insert(ObjectIdentifier($0.1)).inserted }.map { (name: $0.0, tensor: $0.1) }
        shadow = parameters.map { $0.tensor.clone() }
        self.decay = decay
        self.minDecay = minDecay
        self.updateAfterStep = updateAfterStep
        self.schedule = schedule
    }

    /// The decay that update number `n` (1-based) uses.
    public func decay(atUpdate n: Int) -> Double {
        let k = Double(max(0, n - updateAfterStep - 1))
        if k <= 0 { return 0 }
        var d: Double
        switch schedule {
        case .constant: d = decay
        case .diffusers: d = (1 + k) / (10 + k)
        case .warmup(let invGamma, let power): d = 1 - pow(1 + k / invGamma, -power)
        }
        d = min(d, decay)
        return max(d, minDecay)
    }

    /// Moves the shadow values toward the current parameters; returns the decay used.
    @discardableResult
    public func update() -> Double {
        updateCount += 1
        let d = decay(atUpdate: updateCount)
        let oneMinusDecay = Float(1 - d)
        for ((_, p), s) in zip(parameters, shadow) {
            let pp = p.data, sp = s.data
            // Matches diffusers EMAModel.step: parameters that are not trained are copied, not averaged.
            if !p.requiresGrad {
                sp.update(from: pp, count: p.count)
                continue
            }
            parallelFor(p.count, grain: 65_536) { r in
                for i in r { sp[i] -= oneMinusDecay * (sp[i] - pp[i]) }
            }
        }
        return d
    }

    /// Writes the averaged values into the module's parameters.
    public func copyToModel() {
        for ((_, p), s) in zip(parameters, shadow) { p.copyValues(from: s) }
    }

    /// Exchanges the parameters' values with the averaged ones (call again to swap back).
    public func swapWithModel() {
        for ((_, p), s) in zip(parameters, shadow) {
            let pp = p.data, sp = s.data
            for i in 0..<p.count { let t = pp[i]; pp[i] = sp[i]; sp[i] = t }
        }
    }

    /// The averaged values by parameter key, for saving as a checkpoint the model can `load`.
    public func stateDict() -> [String: Tensor] {
        var dict: [String: Tensor] = [:]
        for ((name, _), s) in zip(parameters, shadow) { dict[name] = s }
        return dict
    }

    /// Restores averaged values saved by `stateDict()` (every key, exact shapes, finite values) and the update count.
    public func load(_ source: some WeightSource, updateCount: Int) throws {
        guard updateCount >= 0 else { throw ModuleLoadingError.unreadable(key: "ema_updates", reason: "the update count is \(updateCount)") }
        let expected = Set(parameters.map(\.name))
        let unexpected = source.names.filter { !expected.contains($0) }
        if !unexpected.isEmpty { throw ModuleLoadingError.unexpectedKeys(unexpected, hint: "") }
        let missing = parameters.map(\.name).filter { source.shape(of: $0) == nil }
        if !missing.isEmpty { throw ModuleLoadingError.missingKeys(missing, hint: "") }
        var values: [Tensor] = []
        for ((name, p), _) in zip(parameters, shadow) {
            let t: Tensor
            do { t = try source.tensor(name) } catch { throw ModuleLoadingError.unreadable(key: name, reason: "\(error)") }
            guard t.shape == p.shape else { throw ModuleLoadingError.shapeMismatch(key: name, expected: p.shape, found: t.shape) }
            if let i = t.firstNonFiniteIndex() { throw ModuleLoadingError.nonFinite(key: name, index: i, value: t.data[i]) }
            values.append(t)
        }
        for (s, t) in zip(shadow, values) { s.copyValues(from: t) }
        self.updateCount = updateCount
    }
}
