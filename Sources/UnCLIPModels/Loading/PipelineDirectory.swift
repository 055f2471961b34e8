import Foundation
import UnCLIPNN

/// Why a diffusers-layout directory could not be loaded, naming the path involved.
public enum PipelineLoadError: Error, CustomStringConvertible {
    case missing(path: String, what: String)
    case unsupportedWeights(path: String, reason: String)
    case invalidModelIndex(path: String, reason: String)
    case unknownClass(path: String, component: String, className: String, known: [String])
    case component(name: String, path: String, underlying: Error)
    /// Two components whose configurations do not fit together.
    case incompatible(path: String, first: String, second: String, reason: String)

    public var description: String {
        switch self {
        case .missing(let path, let what): return "\(path): \(what) not found"
        case .unsupportedWeights(let path, let reason): return "\(path): \(reason)"
        case .invalidModelIndex(let path, let reason): return "\(path): \(reason)"
        case .unknownClass(let path, let component, let className, let known):
            return "\(path): '\(component)' is a \(className), which this project cannot build (it builds \(known.joined(separator: ", ")))"
        case .component(let name, let path, let underlying): return "loading '\(name)' from \(path): \(underlying)"
        case .incompatible(let path, let first, let second, let reason):
            return "\(path): \(first) and \(second) do not fit together: \(reason)"
        }
    }
}

/// A diffusers-layout pipeline directory: `model_index.json` and one folder per component.
public struct PipelineDirectory: Sendable {
    public let url: URL
    /// component name → (library, class), e.g. "prior" → ("diffusers", "PriorTransformer").
    public let components: [String: (library: String, className: String)]
    /// The `_class_name` of the pipeline (e.g. "UnCLIPPipeline").
    public let pipelineClass: String

    public init(_ url: URL) throws {
        self.url = url
        let indexURL = url.appendingPathComponent("model_index.json")
        guard FileManager.default.fileExists(atPath: indexURL.path) else {
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) || !isDir.boolValue {
                throw PipelineLoadError.missing(path: url.path, what: "pipeline directory")
            }
            throw PipelineLoadError.missing(path: indexURL.path, what: "model_index.json (is this a diffusers pipeline directory?)")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(contentsOf: indexURL))) as? [String: Any] else {
            throw PipelineLoadError.invalidModelIndex(path: indexURL.path, reason: "not a JSON object")
        }
        var components: [String: (String, String)] = [:]
        for (key, value) in object.sorted(by: { $0.key < $1.key }) where !key.hasPrefix("_") {
            // Entries are [library, class]; [null, null] marks an absent optional component.
            let pair = value as? [Any]
            if let pair, pair.count == 2, pair.allSatisfy({ $0 is NSNull }) { continue }
            guard let pair, pair.count == 2, let library = pair[0] as? String, let cls = pair[1] as? String else {
                throw PipelineLoadError.invalidModelIndex(path: indexURL.path,
                    reason: "entry '\(key)' is \(Self.describe(value)), expected [library, class] such as [\"diffusers\", \"PriorTransformer\"] or [null, null]")
            }
            // A component name unCLIP pipelines do not have is refused: a misspelt "decoder_schedular" would
            // otherwise be ignored and its folder never read.
            guard ComponentRole(component: key) != nil else {
                throw PipelineLoadError.invalidModelIndex(path: indexURL.path,
                    reason: "unknown component '\(key)' (\(cls)); an unCLIP pipeline has \(ComponentRole.componentNames)")
            }
            components[key] = (library, cls)
        }
        self.components = components
        pipelineClass = object["_class_name"] as? String ?? "UnCLIPPipeline"
        guard ComponentRole.pipelineClasses.contains(pipelineClass) else {
            throw PipelineLoadError.unknownClass(path: indexURL.path, component: "_class_name", className: pipelineClass,
                                                 known: ComponentRole.pipelineClasses)
        }
        // Every component's class is checked before anything is loaded.
        for (name, entry) in components.sorted(by: { $0.key < $1.key }) {
            guard let role = ComponentRole(component: name) else { continue }
            guard role.classes.contains(entry.1) else {
                throw PipelineLoadError.unknownClass(path: indexURL.path, component: name, className: entry.1, known: role.classes)
            }
        }
    }

    /// A JSON value as a message shows it.
    static func describe(_ value: Any) -> String {
        guard JSONSerialization.isValidJSONObject([value]), let data = try? JSONSerialization.data(withJSONObject: [value]),
              let text = String(data: data, encoding: .utf8) else { return "\(value)" }
        return String(text.dropFirst().dropLast().prefix(80))
    }

    /// The class `model_index.json` names for `component`.
    public func className(of component: String) -> String? { components[component]?.className }

    public func has(_ component: String) -> Bool { components[component] != nil }

    /// The folder of `component`, which must exist.
    public func folder(_ component: String) throws -> URL {
        let f = url.appendingPathComponent(component)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: f.path, isDirectory: &isDir), isDir.boolValue else {
            throw PipelineLoadError.missing(path: f.path, what: "component folder '\(component)'")
        }
        return f
    }

    /// A file inside a component folder, which must exist.
    public func file(_ component: String, _ name: String) throws -> URL {
        let f = try folder(component).appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: f.path) else {
            throw PipelineLoadError.missing(path: f.path, what: name)
        }
        return f
    }

    /// The weights of a model component, memory-mapped.
    ///
    /// Looks for (in order) `diffusion_pytorch_model[.variant].safetensors`, `model[.variant].safetensors` and their
    /// sharded `*.safetensors.index[.variant].json` forms; with no variant asked, fp16 variants are used when they
    /// are the only weights present (and widened to fp32).
    public func weights(_ component: String, variant: String? = nil) throws -> any WeightSource {
        let dir = try folder(component)
        let fm = FileManager.default
        let variants = variant.map { [$0] } ?? [nil, "fp16"]
        for v in variants {
            for base in ["diffusion_pytorch_model", "model"] {
                let single = dir.appendingPathComponent(v.map { "\(base).\($0).safetensors" } ?? "\(base).safetensors")
                if fm.fileExists(atPath: single.path) { return try SafeTensorsFile(contentsOf: single) }
                let index = dir.appendingPathComponent(v.map { "\(base).safetensors.index.\($0).json" } ?? "\(base).safetensors.index.json")
                if fm.fileExists(atPath: index.path) { return try ShardedSafeTensors(indexURL: index) }
            }
        }
        let bins = ((try? fm.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.hasSuffix(".bin") }
        if !bins.isEmpty {
            throw PipelineLoadError.unsupportedWeights(path: dir.appendingPathComponent(bins[0]).path,
                reason: "PyTorch pickle weights are not read (they can execute code); convert them to safetensors, e.g. with `save_pretrained(..., safe_serialization=True)`")
        }
        throw PipelineLoadError.missing(path: dir.path, what: "weights (diffusion_pytorch_model.safetensors or model.safetensors\(variant.map { " for variant \($0)" } ?? ""))")
    }

    /// Builds a component from its config and loads its weights strictly.
    func load<M: Module>(_ component: String, variant: String?, ignoring: @escaping (String) -> Bool = { _ in false },
                         _ make: (URL) throws -> M) throws -> M {
        do {
            // Built with untouched zeros: the load replaces every parameter, so the built ones never take RAM.
            let config = try file(component, "config.json")
            let model = try Tensor.withUntouchedZeros { try make(config) }
            try model.load(try weights(component, variant: variant), ignoring: ignoring)
            model.eval()
            // Loaded weights are final until something assigns new storage (an optimizer gives each parameter its
            // own copy), so the engine's reordered and bf16 copies of them need no per-call check.
            model.markParametersReadOnly()
            return model
        } catch let error as PipelineLoadError {
            throw error
        } catch {
            throw PipelineLoadError.component(name: component, path: url.appendingPathComponent(component).path, underlying: error)
        }
    }

    // MARK: Components

    public func loadTextEncoder(variant: String? = nil) throws -> CLIPTextModelWithProjection {
        try load("text_encoder", variant: variant, ignoring: { $0.hasSuffix("position_ids") }) {
            try CLIPTextModelWithProjection(try loadCLIPSubconfig(CLIPTextConfig.self, from: $0, key: "text_config"))
        }
    }

    public func loadImageEncoder(variant: String? = nil) throws -> CLIPVisionModelWithProjection {
        try load("image_encoder", variant: variant, ignoring: { $0.hasSuffix("position_ids") }) {
            try CLIPVisionModelWithProjection(try loadCLIPSubconfig(CLIPVisionConfig.self, from: $0, key: "vision_config"))
        }
    }

    public func loadPrior(_ component: String = "prior", variant: String? = nil) throws -> PriorTransformer {
        try load(component, variant: variant) { try PriorTransformer(try loadConfig(PriorTransformerConfig.self, from: $0)) }
    }

    public func loadAutoregressivePrior(_ component: String = "ar_prior", variant: String? = nil) throws -> AutoregressivePriorTransformer {
        try load(component, variant: variant) { try AutoregressivePriorTransformer(try loadConfig(AutoregressivePriorConfig.self, from: $0)) }
    }

    public func loadTextProj(_ component: String = "text_proj", variant: String? = nil) throws -> UnCLIPTextProjModel {
        try load(component, variant: variant) { try UnCLIPTextProjModel(try loadConfig(UnCLIPTextProjConfig.self, from: $0)) }
    }

    public func loadDecoder(_ component: String = "decoder", variant: String? = nil) throws -> UNet2DConditionModel {
        try load(component, variant: variant) { try UNet2DConditionModel(try loadConfig(UNet2DConditionConfig.self, from: $0)) }
    }

    public func loadSuperRes(_ component: String, variant: String? = nil) throws -> UNet2DModel {
        try load(component, variant: variant) { try UNet2DModel(try loadConfig(UNet2DConfig.self, from: $0)) }
    }

    public func loadTokenizer() throws -> CLIPTokenizer {
        do { return try CLIPTokenizer(directory: try folder("tokenizer")) } catch let e as PipelineLoadError { throw e } catch {
            throw PipelineLoadError.component(name: "tokenizer", path: url.appendingPathComponent("tokenizer").path, underlying: error)
        }
    }

    public func loadScheduler(_ component: String) throws -> UnCLIPScheduler {
        do { return try UnCLIPScheduler(configURL: try file(component, "scheduler_config.json")) } catch let e as PipelineLoadError { throw e } catch {
            throw PipelineLoadError.component(name: component, path: url.appendingPathComponent(component).path, underlying: error)
        }
    }
}

/// Reads a CLIP tower config that may be a plain `CLIPTextConfig`/`CLIPVisionConfig` or a full `CLIPConfig`.
func loadCLIPSubconfig<T: Decodable>(_ type: T.Type, from url: URL, key: String) throws -> T {
    if let data = try? Data(contentsOf: url), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
       let sub = object[key] as? [String: Any] {
        return try decodeConfig(T.self, from: JSONSerialization.data(withJSONObject: sub), path: "\(url.path) (\(key))")
    }
    return try loadConfig(T.self, from: url)
}
