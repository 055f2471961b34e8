import CDNNL

// The arithmetic of convolutions and matrix products: fp32 throughout, or bf16 operands in convolutions and large
// matrix products with fp32 accumulation and fp32 results. Everything else (norms, softmax, attention, timestep
// embeddings, the samplers) stays fp32 in both. A recorded graph (training) runs in bf16 only when asked
// (`withPrecision(.bf16, differentiating: true)`, mixed-precision training): then the backward convolutions and
// products take bf16 operands too, while weights, gradients and optimizer state stay fp32.

/// The precision of convolutions and matrix products in inference.
public enum Precision: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Float32 operands and accumulation (the reference; bit-identical to the engine without this setting).
    case fp32
    /// bfloat16 operands (activations converted on the way in, weights once, cached), fp32 accumulation and output.
    case bf16

    public var description: String { rawValue }

    /// The precision of the current task's inference ops: fp32 unless inside `withPrecision`.
    @TaskLocal public static var current: Precision = .fp32

    /// Whether `current` also applies to ops that record a graph, forward and backward (mixed-precision training).
    @TaskLocal public static var differentiating = false

    /// Whether this CPU has bf16 dot-product instructions (AVX-512 BF16 or AMX), as oneDNN detects them. Without
    /// them oneDNN emulates bf16 (slower than fp32) or refuses it.
    public static let hardwareSupportsBF16: Bool = {
        let bf16 = dnnl_cpu_isa_avx512_core_bf16.rawValue
        return dnnl_get_effective_cpu_isa().rawValue & bf16 == bf16
    }()

    /// What `auto` means here: bf16 where the CPU computes it natively, else fp32.
    public static var automatic: Precision { hardwareSupportsBF16 ? .bf16 : .fp32 }

    /// Whether an op on `x`, `weight` and `bias` runs in bf16 now: bf16 is current and either mixed-precision
    /// training is on or no input is being differentiated. (Three parameters, not a variadic list: this runs on every
    /// convolution and linear call.)
    @inline(__always)
    static func bf16Applies(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?) -> Bool {
        guard current == .bf16 else { return false }
        if differentiating { return true }
        return !GradMode.isEnabled || !(x.requiresGrad || weight.requiresGrad || (bias?.requiresGrad ?? false))
    }
}

/// Runs `body` with convolutions and large matrix products at `precision`.
///
/// With `differentiating` false (inference) ops that record a graph stay fp32. With it true (mixed-precision
/// training) they run at `precision` too, and so do their backward passes: bf16 operands, fp32 accumulation, fp32
/// gradients, so the master weights and the optimizer state stay fp32. bf16 keeps fp32's exponent range, so no loss
/// scaling is needed (gradients that fp16 would flush to zero are representable).
@discardableResult
public func withPrecision<T>(_ precision: Precision, differentiating: Bool = false, _ body: () throws -> T) rethrows -> T {
    try Precision.$current.withValue(precision) {
        try Precision.$differentiating.withValue(differentiating, operation: body)
    }
}
