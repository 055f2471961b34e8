/// The stages of unCLIP, one name each: what `unclip train` trains, what a pipeline run reports progress for, what
/// seeded noise streams and recorded noise files (`prior.K`, `decoder.K`, `super_res.K`) are keyed by.
public enum Stage: Hashable, Sendable, CustomStringConvertible {
    case tokenizer, clip, prior, decoder
    /// The paper's autoregressive prior (`unclip train ar-prior`); it samples as the prior stage (`prior`'s noise
    /// stream and progress), so this case names its training.
    case autoregressivePrior
    /// The GLIDE-style baseline decoder, conditioned on the caption alone (`unclip train decoder` with
    /// `"conditioning": "caption"`); it samples as the decoder stage (`decoder`'s noise stream and progress), so this
    /// case names its training.
    case baselineDecoder
    /// Upsampler `k` of the cascade, 0 first (Karlo's 64 → 256, the embedded model's 32 → 128; the paper has two).
    case superResolution(Int)
    /// DDIM inversion of the decoder (progress only: it draws no noise).
    case inversion

    /// The stages `unclip train all` trains, in order.
    public static let trained: [Stage] = [.tokenizer, .clip, .prior, .decoder, .superResolution(0), .superResolution(1)]

    /// The machine-readable name: component prefixes, noise tensors, configuration sections, checkpoint folders.
    /// Upsampler k > 0 is `super_res_{k+1}` (its components `super_res_2_first`, …).
    public var key: String {
        switch self {
        case .tokenizer: return "tokenizer"
        case .clip: return "clip"
        case .prior: return "prior"
        case .decoder: return "decoder"
        case .autoregressivePrior: return "ar_prior"
        case .baselineDecoder: return "glide_decoder"
        case .superResolution(let k): return k == 0 ? "super_res" : "super_res_\(k + 1)"
        case .inversion: return "inversion"
        }
    }

    /// Names an earlier version used for this stage's key (`superres`): read from configuration sections, checkpoint
    /// folders and checkpoints, never written.
    public var earlierKeys: [String] { self == .superResolution(0) ? ["superres"] : [] }

    /// The stage named `key` (the inverse of `key`).
    public init?(key: String) {
        switch key {
        case "tokenizer": self = .tokenizer
        case "clip": self = .clip
        case "prior": self = .prior
        case "decoder": self = .decoder
        case "ar_prior": self = .autoregressivePrior
        case "glide_decoder": self = .baselineDecoder
        case "super_res": self = .superResolution(0)
        case "inversion": self = .inversion
        default:
            guard key.hasPrefix("super_res_"), let n = Int(key.dropFirst("super_res_".count)), n >= 2 else { return nil }
            self = .superResolution(n - 1)
        }
    }

    /// The name people read: "prior", "super-resolution", "super-resolution 2".
    public var description: String {
        switch self {
        case .superResolution(let k): return k == 0 ? "super-resolution" : "super-resolution \(k + 1)"
        case .autoregressivePrior: return "autoregressive prior"
        case .baselineDecoder: return "GLIDE-style decoder"
        default: return key
        }
    }

    /// The Philox stream of `SeededNoise` for this stage; the first four are fixed so seeds keep their images.
    var noiseStream: UInt64 {
        switch self {
        case .prior: return 0
        case .decoder: return 1
        case .superResolution(let k): return k == 0 ? 2 : 3 + UInt64(k)
        case .inversion: return 3
        case .tokenizer: return 1 << 32
        case .clip: return 1 << 32 + 1
        case .autoregressivePrior: return 1 << 32 + 2
        case .baselineDecoder: return 1 << 32 + 3
        }
    }
}
