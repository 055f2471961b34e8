#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A learning rate as a function of the optimizer step (0-based: the rate used for the first update is `lr(0)`).
public struct LearningRateSchedule: Sendable {
    private let rate: @Sendable (Int) -> Float

    public init(_ rate: @escaping @Sendable (Int) -> Float) { self.rate = rate }

    /// The learning rate for `step`.
    public func lr(_ step: Int) -> Float { rate(step) }
    public func callAsFunction(_ step: Int) -> Float { rate(step) }

    /// The same rate at every step.
    public static func constant(_ lr: Float) -> LearningRateSchedule { LearningRateSchedule { _ in lr } }

    /// Linear warm-up from 0 to `baseLR` over `warmupSteps`, then a half cosine from `baseLR` down to `minLR` at
    /// `totalSteps`, and `minLR` after that.
    ///
    /// With `minLR = 0` this is diffusers' `get_cosine_schedule_with_warmup` (num_cycles 0.5): lr(s) = baseLR·s/warmup
    /// during warm-up, then baseLR·½(1 + cos(π·progress)) with progress = (s − warmup)/(total − warmup).
    public static func warmupCosine(baseLR: Float, warmupSteps: Int, totalSteps: Int, minLR: Float = 0) -> LearningRateSchedule {
        precondition(warmupSteps >= 0 && totalSteps >= warmupSteps, "warmupCosine: need 0 ≤ warmupSteps ≤ totalSteps")
        return LearningRateSchedule { step in
            if step < warmupSteps { return baseLR * Float(step) / Float(max(1, warmupSteps)) }
            let progress = min(1, Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps)))
            let cosine = 0.5 * (1 + cos(Double.pi * progress))
            return Float(Double(minLR) + Double(baseLR - minLR) * cosine)
        }
    }

    /// Linear warm-up from 0 to `lr` over `warmupSteps`, then constant (diffusers' `get_constant_schedule_with_warmup`).
    public static func warmupConstant(_ lr: Float, warmupSteps: Int) -> LearningRateSchedule {
        LearningRateSchedule { step in step < warmupSteps ? lr * Float(step) / Float(max(1, warmupSteps)) : lr }
    }
}
