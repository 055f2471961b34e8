import Foundation

// Components that load one by one must still fit together: a tokenizer whose ids the text encoder has no rows for,
// or a prior sized for another text length, would trap inside a matmul or a gather long after loading. These checks
// read only the configs, before any weights.
extension PipelineDirectory {
    /// Checks that the components' configurations fit each other (widths, token counts, channels), naming both files.
    func checkCompatibility(tokenizer: CLIPTokenizer, decoder: UNet2DConditionConfig) throws {
        func config<T: Decodable>(_ type: T.Type, _ component: String, clipKey: String? = nil) throws -> T? {
            guard has(component) else { return nil }
            do {
                let url = try file(component, "config.json")
                return try clipKey.map { try loadCLIPSubconfig(T.self, from: url, key: $0) } ?? loadConfig(T.self, from: url)
            } catch let error as PipelineLoadError { throw error } catch {
                throw PipelineLoadError.component(name: component, path: url.appendingPathComponent(component).path, underlying: error)
            }
        }
        func require(_ ok: Bool, _ a: String, _ b: String, _ reason: String) throws {
            if !ok {
                throw PipelineLoadError.incompatible(path: url.path, first: a, second: b, reason: reason)
            }
        }
        let largestID = max(tokenizer.vocabulary.values.max() ?? 0, tokenizer.bosTokenID, tokenizer.eosTokenID, tokenizer.padTokenID)
        let text = try config(CLIPTextConfig.self, "text_encoder", clipKey: "text_config")
        if let text {
            try require(largestID < text.vocabSize, "tokenizer", "text_encoder/config.json",
                        "the tokenizer has ids up to \(largestID) but vocab_size is \(text.vocabSize)")
            try require(tokenizer.modelMaxLength <= text.maxPositionEmbeddings, "tokenizer", "text_encoder/config.json",
                        "model_max_length \(tokenizer.modelMaxLength) exceeds max_position_embeddings \(text.maxPositionEmbeddings)")
        }
        if let prior = try config(PriorTransformerConfig.self, "prior") {
            try require(prior.numEmbeddings == tokenizer.modelMaxLength, "prior/config.json", "tokenizer",
                        "num_embeddings is \(prior.numEmbeddings) but prompts have model_max_length \(tokenizer.modelMaxLength) tokens")
            if let text {
                try require(prior.embeddingDim == text.projectionDim && prior.embeddingDim == text.hiddenSize, "prior/config.json",
                            "text_encoder/config.json",
                            "embedding_dim \(prior.embeddingDim) must equal the text encoder's projection_dim (\(text.projectionDim)) and hidden_size (\(text.hiddenSize))")
            }
        }
        // unCLIP's decoder and, beside it, the GLIDE-style baseline (same roles, `glide_` folders).
        var decoders = [("", decoder)]
        if let baseline = try config(UNet2DConditionConfig.self, "glide_decoder") {
            try require(baseline.sampleSize == decoder.sampleSize && baseline.inChannels == decoder.inChannels
                        && baseline.outChannels == decoder.outChannels, "glide_decoder/config.json", "decoder/config.json",
                        "the baseline decoder draws \(baseline.inChannels)-channel \(baseline.sampleSize) px images (out_channels \(baseline.outChannels)), the decoder \(decoder.inChannels)-channel \(decoder.sampleSize) px (\(decoder.outChannels)): both feed the same upsamplers")
            guard has("glide_text_proj"), has("glide_decoder_scheduler") else {
                throw PipelineLoadError.missing(path: url.appendingPathComponent("model_index.json").path,
                                                what: "entries 'glide_text_proj' and 'glide_decoder_scheduler' (glide_decoder needs both)")
            }
            decoders.append(("glide_", baseline))
        }
        for (prefix, decoder) in decoders {
            let projName = "\(prefix)text_proj", decoderName = "\(prefix)decoder"
            guard let proj = try config(UnCLIPTextProjConfig.self, projName) else { continue }
            if let text {
                try require(proj.clipEmbeddingsDim == text.projectionDim && proj.clipEmbeddingsDim == text.hiddenSize, "\(projName)/config.json",
                            "text_encoder/config.json",
                            "clip_embeddings_dim \(proj.clipEmbeddingsDim) must equal the text encoder's projection_dim (\(text.projectionDim)) and hidden_size (\(text.hiddenSize))")
            }
            try require(proj.crossAttentionDim == decoder.crossAttentionDim, "\(projName)/config.json", "\(decoderName)/config.json",
                        "cross_attention_dim \(proj.crossAttentionDim) differs from the decoder's \(decoder.crossAttentionDim)")
            let time = 4 * decoder.blockOutChannels[0]
            try require(proj.timeEmbedDim == time, "\(projName)/config.json", "\(decoderName)/config.json",
                        "time_embed_dim \(proj.timeEmbedDim) differs from the decoder's time embedding (4 × block_out_channels[0] = \(time))")
        }
        if let image = try config(CLIPVisionConfig.self, "image_encoder", clipKey: "vision_config") {
            if let text {
                try require(image.projectionDim == text.projectionDim, "image_encoder/config.json", "text_encoder/config.json",
                            "projection_dim \(image.projectionDim) differs from the text encoder's \(text.projectionDim)")
            }
            let processor = try loadImageProcessor()
            try require(processor.cropHeight == image.imageSize && processor.cropWidth == image.imageSize,
                        "feature_extractor/preprocessor_config.json", "image_encoder/config.json",
                        "crop_size \(processor.cropHeight)×\(processor.cropWidth) differs from image_size \(image.imageSize)")
        }
        let channels = decoder.inChannels
        for k in 0... {
            let key = Stage.superResolution(k).key
            guard has("\(key)_first") else { break }
            for name in ["\(key)_first", "\(key)_last"] {
                guard let unet = try config(UNet2DConfig.self, name) else { continue }
                // The upsampler sees its noisy sample and the upsampled image of the stage before, side by side.
                try require(unet.inChannels == 2 * channels && unet.outChannels % channels == 0, "\(name)/config.json",
                            "the stage before it", "in_channels \(unet.inChannels) / out_channels \(unet.outChannels) do not fit \(channels)-channel images (expected \(2 * channels) in, \(channels) or \(2 * channels) out)")
            }
        }
    }
}
