import ArgumentParser
import Foundation
import UnCLIPModels
import UnCLIPTraining

/// Data and output options shared by the training subcommands.
struct TrainingArguments: ParsableArguments {
    @Option(help: ArgumentHelp("The pipeline directory to build (each stage adds its component folders).", valueName: "dir"))
    var out: String

    @Option(help: ArgumentHelp("Train on a folder of name.png/.jpg + name.txt pairs instead of ShapesWorld.", valueName: "dir"))
    var data: String?

    @Option(help: "ShapesWorld scenes to train on (when no --data).")
    var count = 100_000

    @Option(help: "ShapesWorld seed (when no --data).")
    var worldSeed: UInt64 = 0

    @Option(help: ArgumentHelp("A JSON file of training settings (partial: absent keys keep their defaults).", valueName: "file"))
    var config: String?

    @Flag(help: "Continue from the checkpoints in OUT/checkpoints (exactly where they stopped).")
    var resume = false

    @Option(help: ArgumentHelp("""
        Arithmetic of the convolutions and large matrix products, forward and backward: fp32, bf16 (mixed precision: \
        bf16 operands, fp32 accumulation, fp32 master weights, gradients and optimizer state; needs AVX-512 BF16 or \
        AMX) or auto (bf16 where the CPU has it). The exported weights' dtype is the config's "precision".
        """, valueName: "fp32|bf16|auto"))
    var precision: PrecisionChoice = .fp32

    func validate() throws { try precision.validate() }

    /// Runs a stage's training at the chosen precision (a resumed run may change it: the checkpoint is fp32).
    func training<T>(_ body: () throws -> T) rethrows -> T {
        let chosen = precision.resolved()
        if chosen == .bf16 {
            FileHandle.standardError.write(Data("training in bf16 mixed precision (convolutions and large products; fp32 master weights, gradients and optimizer state; no loss scaling: bf16 has fp32's range)\n".utf8))
        }
        return try withPrecision(chosen, differentiating: true, body)
    }

    func dataset() throws -> any CaptionedImageDataset {
        if let data {
            let folder = try FolderDataset(directory: URL(fileURLWithPath: data))
            let scan = folder.validEntries()
            for message in scan.skipped { FileHandle.standardError.write(Data("skipping \(message)\n".utf8)) }
            guard !scan.valid.isEmpty else { throw DatasetError.noUsableEntries(path: data, skipped: scan.skipped.count) }
            return folder.keeping(scan.valid)
        }
        return try ShapesWorldDataset(seed: worldSeed, count: count)
    }

    /// `c` with ShapesWorld's caption recipe when training on ShapesWorld and `c` names none; a folder (`--data`)
    /// gets the rewrites only when its configuration asks (`"caption_recipe": "shapesworld"`).
    func clipConfiguration(_ c: CLIPTrainingConfiguration) -> CLIPTrainingConfiguration {
        data == nil ? c.defaultingCaptionRecipe(to: .shapesWorld) : c
    }

    func load<T: Decodable>(_ type: T.Type, stage: Stage?, userInfo: [CodingUserInfoKey: Any] = [:]) throws -> T? {
        guard let config else { return nil }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: config)) } catch {
            throw InputFileError.missing(flag: "--config", path: config)
        }
        let decoder = JSONDecoder()
        decoder.userInfo = userInfo
        if let stage {
            // A stage's settings may be given alone or inside a train-all file under the stage's key (or an
            // earlier name of it).
            let keys = [stage.key] + stage.earlierKeys
            if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               let sub = keys.lazy.compactMap({ object[$0] }).first {
                return try decoder.decode(T.self, from: JSONSerialization.data(withJSONObject: sub))
            }
        }
        return try decoder.decode(T.self, from: data)
    }
}

/// Draws a progress bar per stage from training events and prints the rest as lines.
final class TrainingReporter {
    private var bars: [Stage: ProgressBar] = [:]

    func handle(_ event: TrainingEvent) {
        switch event {
        case .step(let p):
            let bar = bars[p.stage] ?? ProgressBar(p.stage.description, total: p.totalSteps)
            bars[p.stage] = bar
            bar.update(p.step, note: String(format: "loss %.4f  %.2f steps/s", p.smoothedLoss, p.stepsPerSecond))
        default:
            FileHandle.standardError.write(Data("\(event)\n".utf8))
        }
    }
}

/// `unclip train`: train unCLIP from scratch.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train unCLIP from scratch: tokenizer, CLIP, prior, decoder, the upsampler cascade.",
        discussion: """
            Each stage writes diffusers-layout component folders into --out, checkpoints atomically every N steps \
            into OUT/checkpoints/STAGE/ with a loss log (loss.jsonl), and continues exactly with --resume. Ctrl-C \
            writes a checkpoint before exiting. `unclip train all --out DIR` runs every stage in order.
            """,
        subcommands: [All.self, Tokenizer.self, CLIP.self, Prior.self, AutoregressivePrior.self, Decoder.self, SuperRes.self, Chart.self])

    static func finish(_ outcomes: [TrainingOutcome]) throws {
        for o in outcomes {
            print("\(o.stage): \(o.completedSteps)/\(o.totalSteps) steps, final loss \(o.finalLoss.isFinite ? String(format: "%.4f", o.finalLoss) : "– (already trained)"), \(String(format: "%.2f", o.stepsPerSecond)) steps/s\(o.interrupted ? " (interrupted: resume with --resume)" : "")")
        }
        if outcomes.contains(where: \.interrupted) { throw ExitCode(130) }
    }

    struct All: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train every stage in order and leave a complete pipeline directory.",
            discussion: """
                --config takes one JSON object with a section per stage ("tokenizer", "clip", "prior", "decoder", \
                "super_res" (earlier "superres"), "super_res_2" (the 128 → 512 stage; null skips it); each as its own \
                subcommand's --config) and "sampling": the settings written to \
                OUT/unclip_defaults.json, which generate and evaluate use unless told otherwise (keys as diffusers' \
                UnCLIPPipeline arguments; default {"prior_guidance_scale": 2, "decoder_guidance_scale": 3}, what \
                measured best for ShapesWorld models; {} keeps diffusers' defaults). docs/training.md has the recipes.
                """)
        @OptionGroup var args: TrainingArguments

        func run() throws {
            TrainingInterrupt.install()
            var c = try args.load(TrainAllConfiguration.self, stage: nil) ?? TrainAllConfiguration()
            let reporter = TrainingReporter()
            let start = Date()
            let outcomes: [TrainingOutcome]
            if args.data == nil {
                c.shapesWorldSeed = args.worldSeed
                c.shapesWorldCount = args.count
                outcomes = try args.training {
                    try trainAll(out: URL(fileURLWithPath: args.out), configuration: c, resume: args.resume, progress: reporter.handle)
                }
            } else {
                let dataset = try args.dataset()
                outcomes = try args.training {
                    try trainAll(dataset: dataset, out: URL(fileURLWithPath: args.out), configuration: c,
                                 resume: args.resume, progress: reporter.handle)
                }
            }
            try Train.finish(outcomes)
            print("pipeline in \(args.out) (\(ProgressBar.format(Date().timeIntervalSince(start))))")
        }
    }

    struct Tokenizer: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Learn a CLIP-format BPE (vocab.json + merges.txt) from the captions.")
        @OptionGroup var args: TrainingArguments

        func run() throws {
            let c = try args.load(TokenizerTrainingConfiguration.self, stage: .tokenizer) ?? TokenizerTrainingConfiguration()
            _ = try c.run(dataset: args.dataset(), out: URL(fileURLWithPath: args.out), resume: args.resume, progress: TrainingReporter().handle)
            print("tokenizer in \(args.out)/tokenizer")
        }
    }

    struct CLIP: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "clip", abstract: "Train the CLIP text and image encoders contrastively.")
        @OptionGroup var args: TrainingArguments

        func run() throws {
            TrainingInterrupt.install()
            let c = try args.clipConfiguration(args.load(CLIPTrainingConfiguration.self, stage: .clip) ?? CLIPTrainingConfiguration())
            let dataset = try args.dataset()
            try Train.finish([args.training {
                try c.run(dataset: dataset, out: URL(fileURLWithPath: args.out), resume: args.resume, progress: TrainingReporter().handle)
            }])
        }
    }

    struct Prior: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Train the diffusion prior (needs the CLIP stage's output).")
        @OptionGroup var args: TrainingArguments

        func run() throws {
            TrainingInterrupt.install()
            let c = try args.load(PriorTrainingConfiguration.self, stage: .prior) ?? PriorTrainingConfiguration()
            let dataset = try args.dataset()
            try Train.finish([args.training {
                try c.run(dataset: dataset, out: URL(fileURLWithPath: args.out), resume: args.resume, progress: TrainingReporter().handle)
            }])
        }
    }

    struct AutoregressivePrior: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: Stage.autoregressivePrior.key.replacingOccurrences(of: "_", with: "-"),
            abstract: "Train the paper's autoregressive prior beside the diffusion prior (needs the CLIP stage's output).",
            discussion: """
                Fits PCA to the CLIP image embeddings (the components holding 99 % of the variance), quantises each \
                coordinate into 1024 buckets and trains a causal Transformer to predict them in order from the \
                caption, its CLIP text embedding and the quantised z_i · z_t. Writes OUT/ar_prior, which \
                `unclip generate --prior ar` uses; diffusers ignores the folder. Settings (--config, or the "ar_prior" \
                section of a train-all file): training, heads, head_dim, layers, caption_dropout, variance_kept, \
                buckets, code_samples, precision.
                """,
            aliases: ["ar_prior"])
        @OptionGroup var args: TrainingArguments

        func run() throws {
            TrainingInterrupt.install()
            let c = try args.load(AutoregressivePriorTrainingConfiguration.self, stage: .autoregressivePrior) ?? AutoregressivePriorTrainingConfiguration()
            let dataset = try args.dataset()
            try Train.finish([args.training {
                try c.run(dataset: dataset, out: URL(fileURLWithPath: args.out), resume: args.resume, progress: TrainingReporter().handle)
            }])
        }
    }

    struct Decoder: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train the decoder and text_proj (needs the CLIP stage's output).",
            discussion: """
                --conditioning caption trains the paper's GLIDE-style baseline instead: the same UNet, text_proj and \
                schedule conditioned on the caption alone (caption dropout 20 % unless the config sets it), written as \
                OUT/glide_decoder, glide_text_proj and glide_decoder_scheduler beside the unCLIP decoder; \
                `unclip generate --decoder glide` draws with it and `unclip evaluate --task guidance` compares the two.
                """)
        @OptionGroup var args: TrainingArguments
        @Option(help: ArgumentHelp("What the decoder is conditioned on (overrides the config's \"conditioning\").", valueName: "image_embedding|caption"))
        var conditioning: DecoderTrainingConfiguration.Conditioning?

        func run() throws {
            TrainingInterrupt.install()
            var c = try args.load(DecoderTrainingConfiguration.self, stage: .decoder) ?? DecoderTrainingConfiguration()
            if let conditioning, conditioning != c.conditioning {
                // The caption dropout follows the conditioning's default unless the config gave one.
                let defaultDropout = { (k: DecoderTrainingConfiguration.Conditioning) -> Float in k == .caption ? 0.2 : 0.5 }
                if c.captionDropout == defaultDropout(c.conditioning) { c.captionDropout = defaultDropout(conditioning) }
                c.conditioning = conditioning
            }
            let dataset = try args.dataset()
            try Train.finish([args.training {
                try c.run(dataset: dataset, out: URL(fileURLWithPath: args.out), resume: args.resume, progress: TrainingReporter().handle)
            }])
        }
    }

    struct SuperRes: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: Stage.superResolution(0).key,
            abstract: "Train an upsampler of the cascade: stage 1 (32 → 128) or stage 2 (128 → 512).",
            discussion: """
                One trainer for every stage; the stage's sizes and degradations are settings (--config, or the \
                "super_res" / "super_res_2" section of a train-all file): stage, high_resolution, low_resolution, \
                crop_size, block_out_channels, layers_per_block, norm_groups, the conditioning image's degradations \
                (blur_*, noise_*, resize_*, jpeg_*), prediction_type, precision, training. Stage 2's defaults train \
                on 128 × 128 crops of 512 × 512 ShapesWorld renders with BSR-style degradations (blur, resize jitter, \
                noise, JPEG) and write OUT/super_res_2_first, _last and _scheduler, which `unclip generate --size 512` \
                runs after stage 1. A --data folder's images must be at least the stage's high_resolution.
                """,
            aliases: ["superres"])
        @OptionGroup var args: TrainingArguments
        @Option(help: ArgumentHelp("Which upsampler of the cascade: 1 (the first, 32 → 128 by default) or 2 (128 → 512). A config file naming another \"stage\" is an error.", valueName: "1|2"))
        var stage = 1

        func validate() throws {
            guard (1...2).contains(stage) else { throw ValidationError("--stage must be 1 or 2 (the cascade's upsamplers), got \(stage)") }
        }

        func run() throws {
            TrainingInterrupt.install()
            let c = try args.load(SuperResTrainingConfiguration.self, stage: .superResolution(stage - 1),
                                  userInfo: [SuperResTrainingConfiguration.defaultStageKey: stage]) ?? .defaults(stage: stage)
            if c.stage != stage {
                throw ValidationError("--stage \(stage), but \(args.config ?? "the config") gives \"stage\": \(c.stage); say one")
            }
            let dataset = try args.dataset()
            try Train.finish([args.training {
                try c.run(dataset: dataset, out: URL(fileURLWithPath: args.out), resume: args.resume, progress: TrainingReporter().handle)
            }])
        }
    }
}

extension DecoderTrainingConfiguration.Conditioning: ExpressibleByArgument {}
