import CDNNL

// The arithmetic of inference: fp32 throughout, or bf16 operands in convolutions and large matrix products with fp32
// accumulation and fp32 results. Everything else (norms, softmax, attention, timestep embeddings, the samplers)
// stays fp32 in both, and the recorded graph of training is never run in bf16.

/// The precision of convolutions and matrix products in inference.
public enum Precision: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Float32 operands and accumulation (the reference; bit-identical to the engine without this setting).
    case fp32
    /// bfloat16 operands (activations converted on the way in, weights once, cached), fp32 accumulation and output.
    case bf16

    public var description: String { rawValue }

    /// The precision of the current task's inference ops: fp32 unless inside `withPrecision`.
    @TaskLocal public static var current: Precision = .fp32

    /// Whether this CPU has bf16 dot-product instructions (AVX-512 BF16 or AMX), as oneDNN detects them. Without
    /// them oneDNN emulates bf16 (slower than fp32) or refuses it.
    public static let hardwareSupportsBF16: Bool = {
        let bf16 = dnnl_cpu_isa_avx512_core_bf16.rawValue
        return dnnl_get_effective_cpu_isa().rawValue & bf16 == bf16
    }()

    /// What `auto` means here: bf16 where the CPU computes it natively, else fp32.
    public static var automatic: Precision { hardwareSupportsBF16 ? .bf16 : .fp32 }

    /// Whether an op on `x`, `weight` and `bias` runs in bf16 now: bf16 is current and no input is being
    /// differentiated. (Three parameters, not a variadic list: this runs on every convolution and linear call.)
    @inline(__always)
    static func bf16Applies(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?) -> Bool {
        guard current == .bf16 else { return false }
        return !GradMode.isEnabled || !(x.requiresGrad || weight.requiresGrad || (bias?.requiresGrad ?? false))
    }
}

/// Runs `body` with convolutions and large matrix products at `precision` (inference only: ops recording a graph
/// stay fp32).
@discardableResult
public func withPrecision<T>(_ precision: Precision, _ body: () throws -> T) rethrows -> T {
    try Precision.$current.withValue(precision, operation: body)
}
