import Foundation
import UnCLIPNN

// The pipeline's stages from a directory: each component's type picked by its `_class_name` (`ComponentRole`).
extension PipelineDirectory {
    /// The class of `component`, which must be one `role` builds (checked for every component at `init`).
    func classOf(_ component: String) throws -> String {
        guard let cls = className(of: component) else {
            throw PipelineLoadError.missing(path: url.appendingPathComponent("model_index.json").path, what: "entry '\(component)'")
        }
        return cls
    }

    /// The prior stage in `component` (`prior`, or `ar_prior` beside it), by its class: a `PriorTransformer` with its
    /// `{component}_scheduler`, or an `AutoregressivePriorTransformer`.
    public func loadPriorStage(_ component: String = "prior", variant: String? = nil) throws -> any UnCLIPPrior {
        switch try classOf(component) {
        case "PriorTransformer":
            return DiffusionPrior(prior: try loadPrior(component, variant: variant), scheduler: try loadScheduler("\(component)_scheduler"))
        case "AutoregressivePriorTransformer":
            return AutoregressivePrior(model: try loadAutoregressivePrior(component, variant: variant))
        case let other:
            throw PipelineLoadError.unknownClass(path: url.path, component: component, className: other, known: ComponentRole.prior.classes)
        }
    }

    /// The decoder stage: text_proj, the decoder UNet and its scheduler (`decoder`), or the GLIDE-style baseline's
    /// (`.glide`: `glide_text_proj`, `glide_decoder`, `glide_decoder_scheduler`).
    public func loadDecoderStage(_ kind: DecoderKind = .unclip, variant: String? = nil) throws -> UnCLIPDecoder {
        let prefix = kind == .glide ? "glide_" : ""
        return UnCLIPDecoder(textProj: try loadTextProj("\(prefix)text_proj", variant: variant),
                             unet: try loadDecoder("\(prefix)decoder", variant: variant),
                             scheduler: try loadScheduler("\(prefix)decoder_scheduler"))
    }

    /// The upsampler cascade: `super_res_{first,last,scheduler}`, then `super_res_2_…`, as long as the directory has
    /// the stage's `first` UNet. Weights load when a stage runs.
    public func upsamplers(variant: String? = nil) throws -> [Upsampler] {
        var stages: [Upsampler] = []
        while true {
            let stage = Stage.superResolution(stages.count), key = stage.key
            guard has("\(key)_first") else { break }
            func unet(_ name: String) -> Component<UNet2DModel> {
                Component(name: name) { try self.loadSuperRes(name, variant: variant) }
            }
            let config: UNet2DConfig
            do { config = try loadConfig(UNet2DConfig.self, from: try file("\(key)_first", "config.json")) } catch let error as PipelineLoadError { throw error } catch {
                throw PipelineLoadError.component(name: "\(key)_first", path: url.appendingPathComponent("\(key)_first").path, underlying: error)
            }
            stages.append(Upsampler(stage: stage, first: unet("\(key)_first"), last: has("\(key)_last") ? unet("\(key)_last") : nil,
                                    scheduler: try loadScheduler("\(key)_scheduler"), size: config.sampleSize))
        }
        return stages
    }

    /// The image processor of the CLIP image encoder: `feature_extractor`'s configuration, CLIP's defaults without one.
    public func loadImageProcessor() throws -> CLIPImageProcessor {
        let config = url.appendingPathComponent("feature_extractor/preprocessor_config.json")
        guard FileManager.default.fileExists(atPath: config.path) else { return CLIPImageProcessor() }
        do { return try CLIPImageProcessor(configURL: config) } catch {
            throw PipelineLoadError.component(name: "feature_extractor", path: config.deletingLastPathComponent().path, underlying: error)
        }
    }
}
