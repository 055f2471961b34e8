import Foundation
import UnCLIPNN
import UnCLIPModels

/// Precision of exported weights.
public enum WeightPrecision: String, Codable, Sendable {
    case fp32, fp16

    var dtype: SafeTensors.WriteDType { self == .fp16 ? .f16 : .f32 }
    /// transformers' name for it (`torch_dtype` in a transformers config).
    var torchDtype: String { self == .fp16 ? "float16" : "float32" }
}

/// Writes diffusers-layout component folders: `config.json` with the upstream keys, weights as
/// `diffusion_pytorch_model.safetensors` (diffusers models) or `model.safetensors` (transformers models),
/// `scheduler_config.json`, the tokenizer files, `preprocessor_config.json` and `model_index.json`.
///
/// fp16 weights are stored under the plain file name (not the `.fp16` variant name), so every loader finds them;
/// diffusers, transformers and `PipelineDirectory` widen them to fp32 on load.
public enum ComponentWriter {
    /// The diffusers version written into configs (the version whose key names these files follow).
    public static let diffusersVersion = "0.30.0"
    public static let transformersVersion = "4.44.0"

    /// The (library, class) of every component `model_index.json` may list.
    public static let componentClasses: [(name: String, library: String, className: String)] = [
        ("decoder", "diffusers", "UNet2DConditionModel"),
        ("decoder_scheduler", "diffusers", "UnCLIPScheduler"),
        ("feature_extractor", "transformers", "CLIPImageProcessor"),
        // The GLIDE-style baseline decoder (caption only; diffusers' UnCLIPPipeline ignores the entries).
        ("glide_decoder", "diffusers", "UNet2DConditionModel"),
        ("glide_decoder_scheduler", "diffusers", "UnCLIPScheduler"),
        ("glide_text_proj", "unclip", "UnCLIPTextProjModel"),
        ("image_encoder", "transformers", "CLIPVisionModelWithProjection"),
        ("prior", "diffusers", "PriorTransformer"),
        // The paper's autoregressive prior (this project's class; diffusers' UnCLIPPipeline ignores the entry).
        ("ar_prior", "unclip", "AutoregressivePriorTransformer"),
        ("prior_scheduler", "diffusers", "UnCLIPScheduler"),
        ("super_res_first", "diffusers", "UNet2DModel"),
        ("super_res_last", "diffusers", "UNet2DModel"),
        ("super_res_scheduler", "diffusers", "UnCLIPScheduler"),
        // The second upsampler (128 → 512; diffusers' UnCLIPPipeline ignores the entries, `upsamplers()` runs them).
        ("super_res_2_first", "diffusers", "UNet2DModel"),
        ("super_res_2_last", "diffusers", "UNet2DModel"),
        ("super_res_2_scheduler", "diffusers", "UnCLIPScheduler"),
        ("text_encoder", "transformers", "CLIPTextModelWithProjection"),
        // Karlo's spelling; PipelineDirectory accepts it (diffusers itself cannot import this class by library name).
        ("text_proj", "unclip", "UnCLIPTextProjModel"),
        ("tokenizer", "transformers", "CLIPTokenizer"),
    ]

    // MARK: JSON

    /// Pretty JSON with sorted keys, written atomically.
    public static func writeJSON(_ object: Any, to url: URL) throws {
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            // Foundation prints an integral Double as `1`; transformers' strict config classes reject an int where
            // they declare a float (initializer_factor, dropout, …). Integral floats are therefore marked and
            // printed as `1.0`.
            let marker = "\u{1}float:"
            func mark(_ v: Any) -> Any {
                if let d = v as? [String: Any] { return d.mapValues(mark) }
                if let a = v as? [Any] { return a.map(mark) }
                if let x = v as? Double, x.isFinite, x == x.rounded(), abs(x) < 1e15 { return "\(marker)\(Int(x)).0" }
                if let x = v as? Float, x.isFinite, x == x.rounded(), abs(x) < 1e15 { return "\(marker)\(Int(x)).0" }
                return v
            }
            var text = String(decoding: try JSONSerialization.data(withJSONObject: mark(object), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
            text = text.replacingOccurrences(of: #""(?:\\u0001|\x{01})float:(-?\d+\.0)""#, with: "$1", options: .regularExpression)
            var data = Data(text.utf8)
            data.append(0x0A)
            try data.write(to: url, options: .atomic)
        } catch {
            throw TrainingError.io(path: url.path, reason: "cannot write JSON (\(error.localizedDescription))")
        }
    }

    /// The config's own keys plus what its library's loader looks for: diffusers' `_class_name` and
    /// `_diffusers_version`, or transformers' `architectures`, `torch_dtype` and `transformers_version`.
    static func configObject(_ config: some Encodable, component: String, precision: WeightPrecision) throws -> [String: Any] {
        let entry = componentClass(component)
        var object = try JSONObjectEncoder.object(config)
        if entry.library == "transformers" {
            object["architectures"] = [entry.className]
            object["torch_dtype"] = precision.torchDtype
            object["transformers_version"] = transformersVersion
        } else {
            object["_class_name"] = entry.className
            object["_diffusers_version"] = diffusersVersion
        }
        return object
    }

    /// The (library, class) `componentClasses` lists for a component name the trainers write.
    static func componentClass(_ component: String) -> (library: String, className: String) {
        guard let entry = componentClasses.first(where: { $0.name == component }) else {
            preconditionFailure("\(component) is not a pipeline component")
        }
        return (entry.library, entry.className)
    }

    // MARK: Models

    /// Writes `out/component/config.json` and the module's weights: `model.safetensors` for a transformers component,
    /// `diffusion_pytorch_model.safetensors` otherwise.
    public static func writeModel(_ module: Module, config: some Encodable, as component: String, in out: URL,
                                  precision: WeightPrecision = .fp32) throws {
        let folder = out.appendingPathComponent(component)
        try writeJSON(try configObject(config, component: component, precision: precision), to: folder.appendingPathComponent("config.json"))
        let transformers = componentClass(component).library == "transformers"
        let url = folder.appendingPathComponent(transformers ? "model.safetensors" : "diffusion_pytorch_model.safetensors")
        let metadata = transformers ? ["format": "pt"] : [:]
        do { try SafeTensors.write(module.stateDict(), to: url, dtype: precision.dtype, metadata: metadata) } catch {
            throw TrainingError.io(path: url.path, reason: "cannot write weights (\(error))")
        }
    }

    /// Writes `out/component/scheduler_config.json` for diffusers' `UnCLIPScheduler`.
    public static func writeScheduler(_ config: UnCLIPSchedulerConfig, as component: String, in out: URL) throws {
        try writeJSON(try configObject(config, component: component, precision: .fp32),
                      to: out.appendingPathComponent(component).appendingPathComponent("scheduler_config.json"))
    }

    /// Writes `feature_extractor/preprocessor_config.json` for images of `size` × `size`.
    public static func writeFeatureExtractor(size: Int, mean: [Float], std: [Float], to folder: URL) throws {
        try writeJSON([
            "crop_size": ["height": size, "width": size], "do_center_crop": true, "do_convert_rgb": true,
            "do_normalize": true, "do_rescale": true, "do_resize": true,
            "feature_extractor_type": "CLIPFeatureExtractor", "image_processor_type": "CLIPImageProcessor",
            "image_mean": mean.map(Double.init), "image_std": std.map(Double.init), "resample": 3,
            "rescale_factor": 1.0 / 255.0, "size": ["shortest_edge": size],
        ] as [String: Any], to: folder.appendingPathComponent("preprocessor_config.json"))
    }

    // MARK: Tokenizer

    /// Writes `vocab.json`, `merges.txt`, `tokenizer_config.json` and `special_tokens_map.json` in CLIP's layout.
    ///
    /// The pad token is `<|endoftext|>` (transformers' CLIPTokenizer default): padding never changes the EOS
    /// position the text encoder pools at, and the prior and decoder mask padded positions anyway.
    public static func writeTokenizer(_ vocabulary: BPEVocabulary, to folder: URL) throws {
        var vocab: [String: Int] = [:]
        for (id, token) in vocabulary.tokens.enumerated() { vocab[token] = id }
        try writeJSON(vocab, to: folder.appendingPathComponent("vocab.json"))
        let merges = "#version: 0.2\n" + vocabulary.merges.map { "\($0.0) \($0.1)\n" }.joined()
        do { try Data(merges.utf8).write(to: folder.appendingPathComponent("merges.txt"), options: .atomic) } catch {
            throw TrainingError.io(path: folder.appendingPathComponent("merges.txt").path, reason: error.localizedDescription)
        }
        func special(_ content: String) -> [String: Any] {
            ["content": content, "lstrip": false, "normalized": true, "rstrip": false, "single_word": false]
        }
        let bos = BPEVocabulary.startOfText, eos = BPEVocabulary.endOfText
        try writeJSON(["bos_token": special(bos), "eos_token": special(eos), "unk_token": special(eos), "pad_token": special(eos)],
                      to: folder.appendingPathComponent("special_tokens_map.json"))
        func decoderEntry(_ content: String) -> [String: Any] {
            ["content": content, "lstrip": false, "normalized": true, "rstrip": false, "single_word": false, "special": true]
        }
        try writeJSON([
            "tokenizer_class": "CLIPTokenizer", "model_max_length": vocabulary.modelMaxLength,
            "bos_token": bos, "eos_token": eos, "unk_token": eos, "pad_token": eos,
            "do_lower_case": true, "errors": "replace", "clean_up_tokenization_spaces": true,
            "added_tokens_decoder": [String(vocabulary.bosTokenID): decoderEntry(bos), String(vocabulary.eosTokenID): decoderEntry(eos)],
        ] as [String: Any], to: folder.appendingPathComponent("tokenizer_config.json"))
    }

    // MARK: Pipeline index

    /// Writes `model_index.json` listing the components whose folders exist in `out`.
    @discardableResult
    public static func writeModelIndex(in out: URL) throws -> [String] {
        var index: [String: Any] = ["_class_name": "UnCLIPPipeline", "_diffusers_version": diffusersVersion]
        var present: [String] = []
        for (name, library, className) in componentClasses {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: out.appendingPathComponent(name).path, isDirectory: &isDir), isDir.boolValue else { continue }
            index[name] = [library, className]
            present.append(name)
        }
        try writeJSON(index, to: out.appendingPathComponent("model_index.json"))
        return present
    }
}
