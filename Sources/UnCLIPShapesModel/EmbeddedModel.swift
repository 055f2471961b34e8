import Foundation

/// The unCLIP pipeline trained by this project on ShapesWorld and shipped inside the package.
///
/// A diffusers-layout directory (tokenizer, CLIP text and image encoders, prior, text_proj, decoder, super-resolution,
/// schedulers) with fp16 weights, made by `unclip train all` (see docs/training.md), with the paper's autoregressive
/// prior (`ar_prior`) and a GLIDE-style baseline decoder (`glide_decoder`) beside it. `unclip generate` uses it when
/// no `--model` is given.
public enum EmbeddedModel {
    /// The directory of the shipped pipeline, or nil if this build was made without it.
    public static var url: URL? {
        guard let url = Bundle.module.url(forResource: "shapes-unclip", withExtension: nil),
              FileManager.default.fileExists(atPath: url.appendingPathComponent("model_index.json").path) else { return nil }
        return url
    }
}
