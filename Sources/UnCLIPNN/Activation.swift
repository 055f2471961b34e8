/// A pointwise non-linearity named in a model configuration (`act_fn`, `hidden_act`).
public enum Activation: String, Sendable, CaseIterable {
    /// x·σ(x) ("silu", "swish").
    case silu
    /// Exact erf GELU ("gelu").
    case gelu
    /// Tanh-approximated GELU ("gelu_new", "gelu_pytorch_tanh").
    case geluTanh
    /// x·σ(1.702x), CLIP's ("quick_gelu").
    case quickGELU
    /// max(x, 0) ("relu").
    case relu

    /// The configuration strings accepted, with the activation each names (transformers' / diffusers' spellings).
    public static let configNames: [String: Activation] = [
        "silu": .silu, "swish": .silu, "gelu": .gelu, "gelu_new": .geluTanh, "gelu_pytorch_tanh": .geluTanh,
        "quick_gelu": .quickGELU, "relu": .relu,
    ]

    /// The activation a configuration names; throws naming the unknown name and the accepted ones.
    public init(configName: String) throws {
        guard let a = Self.configNames[configName] else {
            throw UnknownActivationError(name: configName, accepted: Self.configNames.keys.sorted())
        }
        self = a
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .silu: return x.silu()
        case .gelu: return x.gelu()
        case .geluTanh: return x.gelu(approximate: .tanh)
        case .quickGELU: return x.quickGELU()
        case .relu: return x.relu()
        }
    }
}

/// A configuration named an activation function this package does not implement.
public struct UnknownActivationError: Error, CustomStringConvertible, Equatable {
    public let name: String
    public let accepted: [String]
    public var description: String {
        "unknown activation function '\(name)'; accepted: \(accepted.joined(separator: ", "))"
    }
}
