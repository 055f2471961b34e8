import Foundation
import UnCLIPNN
import UnCLIPImage
import UnCLIPModels
import UnCLIPShapesWorld

/// Settings of the CLIP stage: a text and a vision transformer trained contrastively on (caption, image) pairs.
///
/// The text tower's hidden size equals the projection (embedding) size: unCLIP's prior and text_proj apply one
/// `Linear(embedding_dim, …)` to both the text embedding and the text hidden states, as in Karlo (768 and 768).
public struct CLIPTrainingConfiguration: Codable, Sendable {
    /// Steps, batch and optimiser. CLIP's own recipe: AdamW β₂ 0.98, ε 1e-6, weight decay 0.1; contrastive
    /// learning wants a large batch.
    public var training = TrainingSchedule(steps: 2400, batchSize: 128, learningRate: 5e-4, minLearningRate: 1e-5,
                                           warmupSteps: 100, weightDecay: 0.1, beta2: 0.98, adamEpsilon: 1e-6,
                                           gradientClip: 1.0, emaDecay: 0.995, checkpointEvery: 200, seed: 1)
    /// CLIP embedding size E (`projection_dim`), also the text tower's width.
    public var embeddingDim = 128
    public var textLayers = 4
    public var textHeads = 4
    public var textIntermediateSize = 512
    /// Vision tower width, depth, heads and MLP size.
    public var visionWidth = 128
    public var visionLayers = 4
    public var visionHeads = 4
    public var visionIntermediateSize = 512
    /// Image side the vision tower sees (the dataset's images are box-filtered down to it: 32 = the decoder's size).
    public var imageSize = 32
    /// Patch side: 4 gives 8 × 8 = 64 patches at 32 × 32.
    public var patchSize = 4
    /// Precision of the exported weights.
    public var precision: WeightPrecision = .fp16
    /// The caption rewrites added to every batch (mirror pairs and hard negatives), a recipe of the world the captions
    /// come from: `shapesworld` (UnCLIPShapesWorld's `CaptionNegatives`, with the four parts below) or `none`. Unset
    /// (nil, the default) adds none: a general trainer assumes nothing about captions. Training on ShapesWorld
    /// (`unclip train` without `--data`, `trainAll(out:)`) sets `shapesworld` where the configuration names no recipe
    /// (`defaultingCaptionRecipe(to:)`); a folder of your own gets the rewrites only with
    /// `"caption_recipe": "shapesworld"`.
    public var captionRecipe: CLIPCaptionRecipe? = nil
    /// With the ShapesWorld recipe: add each caption's hard negative (`CaptionNegatives.hardNegative`: the opposite
    /// relation, or the two objects' colours swapped) as an extra text every image must score below its own caption,
    /// as NegCLIP does (Yuksekgonul et al. 2023). Part of the recipe that teaches CLIP relations (docs/training.md, "A
    /// CLIP that reads spatial relations"), on as the rest of it; captions without relation or colour words get none.
    public var hardNegatives = true
    /// With the ShapesWorld recipe: add, for each caption, two more hard negatives: one object's shape replaced by
    /// another shape, and one object's colour replaced by another colour (`CaptionNegatives.attributeNegatives`). The
    /// relation recipe's image-view term spends part of the embedding on layout; these keep shapes and colours in it.
    public var attributeNegatives = true
    /// With the ShapesWorld recipe: add, for each two-object caption, the negatives that bind an attribute to the
    /// wrong object (`CaptionNegatives.bindingNegatives`): the two shapes swapped, the two colours swapped, and one
    /// object's shape given to both. The relation recipe without them preferred a caption over the same caption with
    /// its two shapes swapped for 89.1 % of held-out two-object scenes, with them 93.8 % (as an 800-step fine-tune and
    /// trained from the start alike; docs/training.md).
    public var bindingNegatives = true
    /// With the ShapesWorld recipe: fill half of every batch with mirror images of the other half
    /// (`CaptionNegatives.mirrorPair`): a scene flipped along its relation's axis with the relation reversed in its
    /// caption ("A left of B" → flipped left–right, "A right of B"; "A above B" → flipped top–bottom, "A below B"),
    /// any other scene flipped left–right with its caption unchanged. Each relation
    /// caption then meets, in the same batch, the image it does not describe and that image's own caption — a hard
    /// negative on both sides of the loss, which breaks the symmetry that leaves a plain CLIP blind to relations.
    public var mirrorPairs = true
    /// Weight of an image–image contrastive term added to CLIP's loss, as SLIP does (Mu et al. 2022): each image must
    /// pick out its own copy shifted by up to `view_shift` pixels among the batch's shifted images (temperature 0.1).
    /// Text alone never asks the image embedding where things are — a bag-of-words caption scores a scene and its
    /// mirror image alike — so a plain CLIP's embedding keeps little layout, and a decoder given it places objects at
    /// random; with mirror pairs in the batch this term makes the embedding tell a scene from its mirror image.
    /// The relation recipe (the default) uses 1; 0 turns it off.
    public var imageViewWeight: Float = 1
    /// Largest shift, in pixels at `image_size`, between an image and its view (edges replicated).
    public var viewShift = 2
    /// How the vision tower's patch embedding and positions start: `clip` (transformers' CLIP: both N(0, 0.02²); the
    /// default) or `pytorch` (PyTorch's default for the patch convolution, positions N(0, 0.01²): the first embedded
    /// model's CLIP). With `pytorch` a patch's vector is about 1 % position and the tower learns little layout; `clip`
    /// is what let the relation recipe work.
    public var initialization: Initialization = .clip
    /// ln of the starting logit scale (transformers' `logit_scale_init_value`; CLIP's ln(1/0.07)).
    public var logitScaleInitValue = Float(Foundation.log(1 / 0.07))
    /// A pipeline directory whose `text_encoder` and `image_encoder` weights start the run instead of random ones
    /// (fine-tuning a finished CLIP, e.g. with new negatives); its configs must match these settings. The logit scale is
    /// not part of those components: set `logit_scale_init_value` to the finished run's.
    public var initializeFrom: String? = nil

    public enum Initialization: String, Codable, Sendable {
        case pytorch, clip
    }

    /// The configuration with `recipe` where it names no caption recipe: what a run on `recipe`'s world uses.
    public func defaultingCaptionRecipe(to recipe: CLIPCaptionRecipe) -> CLIPTrainingConfiguration {
        var c = self
        c.captionRecipe = captionRecipe ?? recipe
        return c
    }

    /// Whether the ShapesWorld rewrites run (the recipe named, and not `none`).
    var shapesWorldRewrites: Bool { captionRecipe == .shapesWorld }

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case training, embeddingDim = "embedding_dim", textLayers = "text_layers", textHeads = "text_heads"
        case textIntermediateSize = "text_intermediate_size", visionWidth = "vision_width", visionLayers = "vision_layers"
        case visionHeads = "vision_heads", visionIntermediateSize = "vision_intermediate_size", imageSize = "image_size"
        case patchSize = "patch_size", precision, captionRecipe = "caption_recipe"
        case hardNegatives = "hard_negatives", mirrorPairs = "mirror_pairs"
        case attributeNegatives = "attribute_negatives"
        case imageViewWeight = "image_view_weight", viewShift = "view_shift", initialization
        case bindingNegatives = "binding_negatives", logitScaleInitValue = "logit_scale_init_value"
        case initializeFrom = "initialize_from"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self, section: "clip")
        let d = CLIPTrainingConfiguration()
        training = try c.decodeIfPresent(TrainingScheduleOverride.self, forKey: .training)?.applied(to: d.training) ?? d.training
        embeddingDim = try c.decodeIfPresent(Int.self, forKey: .embeddingDim) ?? d.embeddingDim
        textLayers = try c.decodeIfPresent(Int.self, forKey: .textLayers) ?? d.textLayers
        textHeads = try c.decodeIfPresent(Int.self, forKey: .textHeads) ?? d.textHeads
        textIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .textIntermediateSize) ?? d.textIntermediateSize
        visionWidth = try c.decodeIfPresent(Int.self, forKey: .visionWidth) ?? d.visionWidth
        visionLayers = try c.decodeIfPresent(Int.self, forKey: .visionLayers) ?? d.visionLayers
        visionHeads = try c.decodeIfPresent(Int.self, forKey: .visionHeads) ?? d.visionHeads
        visionIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .visionIntermediateSize) ?? d.visionIntermediateSize
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? d.patchSize
        precision = try c.decodeIfPresent(WeightPrecision.self, forKey: .precision) ?? d.precision
        captionRecipe = try c.decodeIfPresent(CLIPCaptionRecipe.self, forKey: .captionRecipe)
        hardNegatives = try c.decodeIfPresent(Bool.self, forKey: .hardNegatives) ?? d.hardNegatives
        mirrorPairs = try c.decodeIfPresent(Bool.self, forKey: .mirrorPairs) ?? d.mirrorPairs
        attributeNegatives = try c.decodeIfPresent(Bool.self, forKey: .attributeNegatives) ?? d.attributeNegatives
        imageViewWeight = try c.decodeIfPresent(Float.self, forKey: .imageViewWeight) ?? d.imageViewWeight
        viewShift = try c.decodeIfPresent(Int.self, forKey: .viewShift) ?? d.viewShift
        initialization = try c.decodeIfPresent(Initialization.self, forKey: .initialization) ?? d.initialization
        bindingNegatives = try c.decodeIfPresent(Bool.self, forKey: .bindingNegatives) ?? d.bindingNegatives
        logitScaleInitValue = try c.decodeIfPresent(Float.self, forKey: .logitScaleInitValue) ?? d.logitScaleInitValue
        initializeFrom = try c.decodeIfPresent(String.self, forKey: .initializeFrom)
    }

    /// CLIP's image normalisation (the released models' statistics, kept so the feature extractor is standard).
    public static let imageMean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public static let imageStd: [Float] = [0.26862954, 0.26130258, 0.27577711]

    func validate() throws {
        func check(_ ok: Bool, _ option: String, _ value: Int, _ rule: String) throws {
            if !ok { throw TrainingError.invalidConfiguration(stage: Stage.clip.key, option: option, value: "\(value)", rule: rule) }
        }
        try check(embeddingDim > 0 && embeddingDim % textHeads == 0, "embedding_dim", embeddingDim, "a positive multiple of text_heads")
        try check(visionWidth > 0 && visionWidth % visionHeads == 0, "vision_width", visionWidth, "a positive multiple of vision_heads")
        try check(patchSize > 0 && imageSize % patchSize == 0, "patch_size", patchSize, "a divisor of image_size (\(imageSize))")
        try check(textLayers >= 1 && visionLayers >= 1, "text_layers/vision_layers", min(textLayers, visionLayers), "at least 1")
        try check(viewShift >= 0 && viewShift < imageSize / 2, "view_shift", viewShift, "0 ..< image_size/2")
        if !(logitScaleInitValue.isFinite && logitScaleInitValue <= Float(Foundation.log(100.0))) {
            throw TrainingError.invalidConfiguration(stage: Stage.clip.key, option: "logit_scale_init_value", value: "\(logitScaleInitValue)",
                                                     rule: "a finite number ≤ ln 100 (the scale is clamped at 100)")
        }
        if !(imageViewWeight >= 0 && imageViewWeight.isFinite) {
            throw TrainingError.invalidConfiguration(stage: Stage.clip.key, option: "image_view_weight", value: "\(imageViewWeight)", rule: "a finite number ≥ 0")
        }
        try training.validate(stage: .clip)
    }

    /// transformers' `CLIPTextConfig` for `text_encoder/config.json`.
    ///
    /// `eos_token_id` is the real EOS id, so transformers (and `CLIPTextModelWithProjection`) pool at the first EOS;
    /// the legacy value 2 would select argmax pooling, which only works with OpenAI's vocabulary order.
    func textConfig(tokenizer: CLIPTokenizer) -> CLIPTextConfig {
        var c = CLIPTextConfig()
        c.vocabSize = max(tokenizer.vocabulary.values.max() ?? 0, tokenizer.eosTokenID, tokenizer.bosTokenID) + 1
        c.hiddenSize = embeddingDim
        c.intermediateSize = textIntermediateSize
        c.numHiddenLayers = textLayers
        c.numAttentionHeads = textHeads
        c.maxPositionEmbeddings = tokenizer.modelMaxLength
        c.projectionDim = embeddingDim
        c.hiddenAct = "quick_gelu"
        c.layerNormEps = 1e-5
        c.bosTokenId = tokenizer.bosTokenID
        c.eosTokenId = tokenizer.eosTokenID
        c.padTokenId = tokenizer.padTokenID
        return c
    }

    /// transformers' `CLIPVisionConfig` for `image_encoder/config.json`.
    func visionConfig() -> CLIPVisionConfig {
        var c = CLIPVisionConfig()
        c.hiddenSize = visionWidth
        c.intermediateSize = visionIntermediateSize
        c.numHiddenLayers = visionLayers
        c.numAttentionHeads = visionHeads
        c.numChannels = 3
        c.imageSize = imageSize
        c.patchSize = patchSize
        c.projectionDim = embeddingDim
        c.hiddenAct = "quick_gelu"
        c.layerNormEps = 1e-5
        return c
    }

    /// Trains CLIP on the dataset and writes `text_encoder/`, `image_encoder/` and `feature_extractor/` into `out`
    /// (which must already hold `tokenizer/`). Checkpoints and the loss log go to `out/checkpoints/clip/`.
    @discardableResult
    public func run(dataset: some CaptionedImageDataset, out: URL, resume: Bool = false,
                    progress: (TrainingEvent) -> Void = { _ in }) throws -> TrainingOutcome {
        try validate()
        guard dataset.count > 0 else { throw TrainingError.emptyDataset(stage: .clip) }
        let tokenizer = try loadTrainedTokenizer(out, stage: .clip)
        let model = CLIPContrastiveModel(text: try CLIPTextModelWithProjection(textConfig(tokenizer: tokenizer)),
                                         vision: try CLIPVisionModelWithProjection(visionConfig()))
        var initRNG = TrainingRandom.initialization(seed: training.seed)
        model.initialize(using: &initRNG, visionEmbeddings: initialization, logitScale: logitScaleInitValue)
        if let initializeFrom {
            let source = try PipelineDirectory(URL(fileURLWithPath: initializeFrom))
            try model.text.load(try source.weights("text_encoder"), ignoring: { $0.hasSuffix("position_ids") })
            try model.vision.load(try source.weights("image_encoder"), ignoring: { $0.hasSuffix("position_ids") })
            model.requiresGrad(true)
            progress(.message(stage: .clip, text: "initialised text_encoder and image_encoder from \(initializeFrom)"))
        }

        let loop = try TrainingLoop(stage: .clip, model: model, schedule: training,
                                    folder: checkpointFolder(.clip, in: out), configJSON: try jsonString(self))
        try loop.restoreIfRequested(resume, progress: progress)
        var sampler = BatchSampler(count: dataset.count, batchSize: training.batchSize, seed: training.seed)
        let length = tokenizer.modelMaxLength
        let outcome = try loop.run(progress: progress) { step in
            let (images, captions, negatives) = batch(dataset, indices: sampler.indices(step: step), step: step, progress: progress)
            guard images.count >= 2 else { return nil }
            let pixels = normalizedPixels(images, mean: Self.imageMean, std: Self.imageStd)
            var views: Tensor?
            if imageViewWeight > 0 {
                var rng = TrainingRandom.generator(seed: training.seed, step: step, .augmentation)
                let span = 2 * viewShift + 1
                views = normalizedPixels(images.map {
                    $0.shifted(dx: TrainingRandom.int(span, using: &rng) - viewShift, dy: TrainingRandom.int(span, using: &rng) - viewShift)
                }, mean: Self.imageMean, std: Self.imageStd)
            }
            return model.contrastiveLoss(pixels: pixels, ids: tokenizer(captions + negatives, padToLength: length).ids,
                                         captions: captions, views: views, viewWeight: imageViewWeight)
        }
        if outcome.exported {
            try ComponentWriter.writeModel(model.text, config: model.text.config, as: "text_encoder", in: out, precision: precision)
            try ComponentWriter.writeModel(model.vision, config: model.vision.config, as: "image_encoder", in: out, precision: precision)
            try ComponentWriter.writeFeatureExtractor(size: imageSize, mean: Self.imageMean, std: Self.imageStd,
                                                      to: out.appendingPathComponent("feature_extractor"))
            try ComponentWriter.writeModelIndex(in: out)
            progress(.message(stage: .clip, text: "wrote text_encoder, image_encoder and feature_extractor (EMA weights)"))
        }
        return outcome
    }

    /// The batch of `step`: the images at `image_size`, their captions, and the negative captions — the data's own
    /// pairs, plus with the ShapesWorld recipe the mirror pairs (half the batch) and the hard, attribute and binding
    /// negatives. Entries that fail to load are reported and left out.
    func batch(_ dataset: some CaptionedImageDataset, indices: [Int], step: Int, progress: (TrainingEvent) -> Void)
        -> (images: [RGBImage], captions: [String], negatives: [String]) {
        let mirrored = shapesWorldRewrites && mirrorPairs
        var (images, captions) = loadBatch(dataset, indices: mirrored ? Array(indices.prefix((indices.count + 1) / 2)) : indices,
                                           stage: .clip, progress: progress) { try downsampled($0, to: imageSize) }
        if mirrored {
            let mirrors = zip(images, captions).map { CaptionNegatives.mirrorPair(image: $0, caption: $1) }
            images += mirrors.map(\.image)
            captions += mirrors.map(\.caption)
        }
        guard shapesWorldRewrites else { return (images, captions, []) }
        // A negative that is some image's own caption in this batch (a mirror pair's) would be a target and a
        // non-target at once: only the others are added.
        let own = Set(captions)
        var negatives = hardNegatives ? captions.compactMap(CaptionNegatives.hardNegative) : []
        if attributeNegatives {
            var rng = TrainingRandom.generator(seed: training.seed, step: step, .negatives)
            negatives += captions.flatMap { CaptionNegatives.attributeNegatives($0, using: &rng) }
        }
        if bindingNegatives { negatives += captions.flatMap(CaptionNegatives.bindingNegatives) }
        return (images, captions, negatives.filter { !own.contains($0) })
    }
}

/// Caption rewrites a CLIP run adds to its batches: the recipe of the world its captions come from.
public enum CLIPCaptionRecipe: String, Codable, Sendable, CaseIterable {
    /// None: every batch is the data's own (caption, image) pairs.
    case none
    /// ShapesWorld's (UnCLIPShapesWorld's `CaptionNegatives`): mirror pairs and hard, attribute and binding negatives,
    /// each switched by its own key (`mirror_pairs`, `hard_negatives`, `attribute_negatives`, `binding_negatives`).
    case shapesWorld = "shapesworld"
}

/// The two CLIP towers and the learned temperature, trained together.
final class CLIPContrastiveModel: Module {
    let text: CLIPTextModelWithProjection
    let vision: CLIPVisionModelWithProjection
    /// ln of the logit scale; CLIP initialises it to ln(1/0.07).
    let logit_scale: Tensor

    init(text: CLIPTextModelWithProjection, vision: CLIPVisionModelWithProjection) {
        self.text = text
        self.vision = vision
        logit_scale = Tensor(scalar: Float(Foundation.log(1 / 0.07)))
    }

    /// PyTorch default initialisation, then CLIP's for the embeddings (transformers `CLIPPreTrainedModel._init_weights`:
    /// token embeddings N(0, 0.02²), text positions N(0, 0.01²), the class embedding N(0, 1/width)); the patch
    /// embedding and image positions follow `visionEmbeddings`.
    ///
    /// The patch embedding matters: PyTorch's default for a 4 × 4 × 3 convolution is about four times CLIP's, which
    /// drowns the image positions (≈ 1 % of each patch's vector instead of ≈ 10 %) and leaves the embedding with
    /// little layout.
    func initialize(using rng: inout Philox, visionEmbeddings: CLIPTrainingConfiguration.Initialization,
                    logitScale: Float = Float(Foundation.log(1 / 0.07))) {
        resetParameters(using: &rng)
        withNoGrad { logit_scale.assign(Tensor(scalar: logitScale)) }
        let clip = visionEmbeddings == .clip
        withNoGrad {
            for (key, t) in namedParameters() {
                let scale: Float
                if key.hasSuffix("token_embedding.weight") { scale = 0.02 }
                else if key.hasSuffix("text_model.embeddings.position_embedding.weight") { scale = 0.01 }
                else if key.hasSuffix("vision_model.embeddings.position_embedding.weight") { scale = clip ? 0.02 : 0.01 }
                else if clip, key.hasSuffix("patch_embedding.weight") {
                    t.assign(Tensor.randn(t.shape, using: &rng) * 0.02)
                    continue
                } else if key.hasSuffix("class_embedding") {
                    t.assign(Tensor.randn(t.shape, using: &rng) * (1 / Float(t.count).squareRoot()))
                    continue
                } else { continue }
                t.assign(t * scale)
            }
        }
        requiresGrad(true)
    }

    /// Symmetric contrastive cross-entropy over the batch with the learned temperature (exp clamped at 100).
    ///
    /// Targets are soft: a batch often holds several images with the same caption ("a red circle"), and every one of
    /// them is a correct match, so each row's target spreads evenly over the entries sharing its caption. With
    /// distinct captions this is CLIP's loss exactly. `ids` may hold more texts than `captions`: the extra ones are
    /// hard negatives, extra columns of the image → text softmax that match no image.
    func contrastiveLoss(pixels: Tensor, ids: [[Int]], captions: [String], views: Tensor? = nil, viewWeight: Float = 0) -> Tensor {
        let b = captions.count, n = ids.count
        let image = l2Normalized(vision(pixels))               // [B, E]
        let textEmbeds = l2Normalized(text(ids).textEmbeds)    // [N, E], N ≥ B
        let scale = logit_scale.exp().clamped(min: 0, max: 100)
        let logits = image.matmul(textEmbeds.transposed(0, 1)) * scale  // [B images, N texts]
        var targets = [Float](repeating: 0, count: b * n)
        for i in 0..<b {
            let same = (0..<b).filter { captions[$0] == captions[i] }
            for j in same { targets[i * n + j] = 1 / Float(same.count) }
        }
        let t = Tensor(shape: [b, n], targets)
        let imageToText = -(t * logits.logSoftmax(axis: 1)).sum() / Float(b)
        // Text → image over the batch's own captions only (a negative caption has no image to pick).
        let own = n == b ? logits : logits.sliced(axis: 1, 0..<b)
        let ownTargets = n == b ? t : Tensor(shape: [b, b], (0..<(b * b)).map { targets[($0 / b) * n + $0 % b] })
        let textToImage = -(ownTargets * own.logSoftmax(axis: 0)).sum() / Float(b)
        let clipLoss = (imageToText + textToImage) * 0.5
        guard let views, viewWeight > 0 else { return clipLoss }
        // SLIP's image–image term: image i and view j match when i = j (SimCLR's temperature 0.1).
        let viewLogits = image.matmul(l2Normalized(vision(views)).transposed(0, 1)) * 10  // [B, B]
        let identity = Tensor(shape: [b, b], (0..<(b * b)).map { $0 / b == $0 % b ? 1 : 0 })
        let viewLoss = -(identity * viewLogits.logSoftmax(axis: 1)).sum() / Float(b) - (identity * viewLogits.logSoftmax(axis: 0)).sum() / Float(b)
        return clipLoss + viewLoss * (0.5 * viewWeight)
    }
}

/// Rows divided by their Euclidean norm.
func l2Normalized(_ x: Tensor) -> Tensor {
    x / ((x * x).sum(axes: [x.rank - 1], keepDims: true) + 1e-12).sqrt()
}

// MARK: - Shared data helpers

/// The image box-filtered down to `size` × `size` (the ShapesWorld rule for lower resolutions).
func downsampled(_ image: RGBImage, to size: Int) throws -> RGBImage {
    if image.width == size && image.height == size { return image }
    guard image.width == image.height, image.width % size == 0 else {
        throw TrainingError.invalidConfiguration(stage: "data", option: "image size", value: "\(image.width)x\(image.height)",
                                                 rule: "a square whose side is a multiple of \(size)")
    }
    return try image.boxDownsampled(factor: image.width / size)
}

/// Images → [N, 3, S, S] with (x/255 − mean)/std per channel (transformers' CLIPImageProcessor normalisation).
func normalizedPixels(_ images: [RGBImage], mean: [Float], std: [Float]) -> Tensor {
    let s = images[0].width, plane = s * s
    let out = Tensor(uninitializedShape: [images.count, 3, s, s])
    let dst = out.data
    for (n, image) in images.enumerated() {
        image.pixels.withUnsafeBufferPointer { src in
            for c in 0..<3 {
                let base = dst + (n * 3 + c) * plane
                for i in 0..<plane { base[i] = (Float(src[3 * i + c]) / 255 - mean[c]) / std[c] }
            }
        }
    }
    return out
}

/// The trained tokenizer in `out/tokenizer`, or an error saying to train it first.
func loadTrainedTokenizer(_ out: URL, stage: Stage) throws -> CLIPTokenizer {
    let folder = out.appendingPathComponent("tokenizer")
    guard FileManager.default.fileExists(atPath: folder.appendingPathComponent("vocab.json").path) else {
        throw TrainingError.missingPrerequisite(stage: stage, path: folder.path, hint: "train the tokenizer first: `unclip train tokenizer`")
    }
    return try CLIPTokenizer(directory: folder)
}

/// A value as compact JSON with sorted keys (the configuration stored in checkpoints).
func jsonString(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

/// A partial `TrainingSchedule` from JSON: only the keys present override the stage's defaults.
struct TrainingScheduleOverride: Decodable {
    let values: [String: JSONScalar]

    enum JSONScalar: Decodable {
        case number(Double), string(String)
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let d = try? c.decode(Double.self) { self = .number(d) } else { self = .string(try c.decode(String.self)) }
        }
    }

    init(from decoder: Decoder) throws { values = try decoder.singleValueContainer().decode([String: JSONScalar].self) }

    /// `defaults` with the present keys replaced (decoded by `TrainingSchedule`'s own keys, so typos are reported).
    func applied(to defaults: TrainingSchedule) throws -> TrainingSchedule {
        var merged = try JSONSerialization.jsonObject(with: JSONEncoder().encode(defaults)) as! [String: Any]
        let known = Set(merged.keys)
        for (key, value) in values {
            guard known.contains(key) else {
                throw TrainingError.invalidConfiguration(stage: "configuration", option: "training.\(key)", value: "",
                                                         rule: "one of \(known.sorted().joined(separator: ", "))")
            }
            switch value {
            case .number(let d): merged[key] = d
            case .string(let s): merged[key] = s
            }
        }
        return try JSONDecoder().decode(TrainingSchedule.self, from: JSONSerialization.data(withJSONObject: merged))
    }
}

/// The frozen, trained CLIP that the prior and decoder stages condition on, loaded from `out`.
final class FrozenCLIP {
    let tokenizer: CLIPTokenizer
    let text: CLIPTextModelWithProjection
    let vision: CLIPVisionModelWithProjection
    let imageSize: Int
    let mean: [Float], std: [Float]
    /// The empty caption's encoding: what the pipelines use for the unconditional branch.
    let empty: (embeds: Tensor, hidden: Tensor, mask: [Int])

    init(out: URL, stage: Stage) throws {
        for component in ["tokenizer", "text_encoder", "image_encoder", "feature_extractor"] {
            let path = out.appendingPathComponent(component).path
            guard FileManager.default.fileExists(atPath: path) else {
                throw TrainingError.missingPrerequisite(stage: stage, path: path, hint: "train CLIP first: `unclip train clip`")
            }
        }
        let directory = try PipelineDirectory(out)
        let tokenizer = try directory.loadTokenizer(), text = try directory.loadTextEncoder()
        self.tokenizer = tokenizer
        self.text = text
        vision = try directory.loadImageEncoder()
        text.requiresGrad(false)
        vision.requiresGrad(false)
        let processor = try CLIPImageProcessor(configURL: try directory.file("feature_extractor", "preprocessor_config.json"))
        imageSize = vision.config.imageSize
        mean = processor.mean
        std = processor.std
        let e = tokenizer([""], padToLength: tokenizer.modelMaxLength)
        let out = withNoGrad { text(e.ids) }
        empty = (out.textEmbeds, out.lastHiddenState, e.mask[0])
    }

    /// CLIP's embedding width, which `stage` (`projector`, the model that takes the text embedding and the text
    /// hidden states through one width) needs to equal the text encoder's hidden size.
    func embeddingDim(stage: Stage, projector: String) throws -> Int {
        let e = text.config.projectionDim
        guard text.config.hiddenSize == e else {
            throw TrainingError.invalidConfiguration(stage: stage.key, option: "text_encoder hidden_size", value: "\(text.config.hiddenSize)",
                                                     rule: "equal to projection_dim (\(e)): \(projector) projects both with one width")
        }
        return e
    }

    /// Text embeddings [B, E], hidden states [B, L, E] and masks of `captions`; rows with `dropped[i]` get the empty
    /// caption's encoding instead (caption dropout for classifier-free guidance).
    func encode(_ captions: [String], dropped: [Bool]) -> (embeds: Tensor, hidden: Tensor, mask: [[Int]]) {
        let batch = tokenizer(captions, padToLength: tokenizer.modelMaxLength)
        let out = withNoGrad { text(batch.ids) }
        guard dropped.contains(true) else { return (out.textEmbeds, out.lastHiddenState, batch.mask) }
        let b = captions.count
        // Gather from [real rows; the empty row]: row b is the empty caption.
        let rows = (0..<b).map { dropped[$0] ? b : $0 }
        func pick(_ t: Tensor, _ e: Tensor) -> Tensor {
            let inner = Array(t.shape.dropFirst())
            let all = Tensor.concat([t.reshaped([b, -1]), e.reshaped([1, -1])], axis: 0)
            return all.gatherRows(rows).reshaped([b] + inner)
        }
        let mask = (0..<b).map { dropped[$0] ? empty.mask : batch.mask[$0] }
        return (pick(out.textEmbeds, empty.embeds), pick(out.lastHiddenState, empty.hidden), mask)
    }

    /// Raw CLIP image embeddings [B, E] (not L2-normalised, as unCLIP uses them) of images at the CLIP resolution.
    func imageEmbeddings(_ images: [RGBImage]) -> Tensor {
        withNoGrad { vision(normalizedPixels(images, mean: mean, std: std)) }
    }
}
