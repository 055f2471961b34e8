/// What each component of a diffusers-layout unCLIP directory is, and the `_class_name`s in `model_index.json` this
/// project can build for it. The loader picks a component's type from its class name; a class it cannot build is an
/// error naming the component, the class and the ones it knows (never silently loaded as something else).
///
/// A new model class for a role (an autoregressive prior, say) is a new entry in `classes` and a new case in the
/// role's loader in `PipelineDirectory`.
public enum ComponentRole: String, Sendable, CaseIterable {
    case tokenizer, textEncoder, imageEncoder, imageProcessor, prior, textProj, decoder, upsampler, scheduler

    /// The role of the component folder `name`: `prior`, `super_res_first`, `super_res_2_last`, `decoder_scheduler`, …
    /// nil for a name unCLIP pipelines do not have (diffusers ignores such entries with a warning; this loader refuses
    /// them, as it refuses unknown config options).
    public init?(component name: String) {
        switch name {
        case "tokenizer": self = .tokenizer
        case "text_encoder": self = .textEncoder
        case "image_encoder": self = .imageEncoder
        case "feature_extractor": self = .imageProcessor
        case "prior", "ar_prior": self = .prior
        case "text_proj", "glide_text_proj": self = .textProj
        case "decoder", "glide_decoder": self = .decoder
        default:
            if name.hasSuffix("_scheduler") { self = .scheduler; return }
            guard let cut = name.lastIndex(of: "_"), ["_first", "_last"].contains(String(name[cut...])),
                  case .superResolution = Stage(key: String(name[..<cut])) else { return nil }
            self = .upsampler
        }
    }

    /// The class names this project builds for the role.
    public var classes: [String] {
        switch self {
        case .tokenizer: return ["CLIPTokenizer", "CLIPTokenizerFast"]
        case .textEncoder: return ["CLIPTextModelWithProjection"]
        case .imageEncoder: return ["CLIPVisionModelWithProjection"]
        case .imageProcessor: return ["CLIPImageProcessor", "CLIPFeatureExtractor"]
        case .prior: return ["PriorTransformer", "AutoregressivePriorTransformer"]
        case .textProj: return ["UnCLIPTextProjModel"]
        case .decoder: return ["UNet2DConditionModel"]
        case .upsampler: return ["UNet2DModel"]
        case .scheduler: return ["UnCLIPScheduler"]
        }
    }

    /// The component names `init(component:)` accepts, for messages.
    public static let componentNames = "tokenizer, text_encoder, image_encoder, feature_extractor, prior, ar_prior, text_proj, decoder, glide_text_proj, glide_decoder, "
        + "super_res_first, super_res_last, super_res_N_first, super_res_N_last and *_scheduler"

    /// The pipeline classes (`model_index.json`'s own `_class_name`) this project runs.
    public static let pipelineClasses = ["UnCLIPPipeline", "UnCLIPImageVariationPipeline"]
}
