import Foundation
import FuzzSupport
import UnCLIPModels

/// A whole model directory as `unclip generate --model DIR` and `unclip serve --model DIR` open it: `model_index.json`
/// (entries, class names), the tokenizer's files, every component's `config.json`, the schedulers, the image
/// processor and `unclip_defaults.json`, validated one by one and against each other (`UnCLIPPipeline(directory:)`,
/// which reads every configuration before any weights; there are none here, so loading stops at them).
///
/// The input is the files' contents in the order of `files`, separated by NUL bytes (no JSON or
/// text file holds one); an empty part leaves its file out, and a folder with no file is left out too.
let files = [
    "model_index.json", "unclip_defaults.json",
    "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json",
    "text_encoder/config.json", "prior/config.json", "text_proj/config.json", "decoder/config.json",
    "super_res_first/config.json", "super_res_last/config.json", "image_encoder/config.json",
    "feature_extractor/preprocessor_config.json", "prior_scheduler/scheduler_config.json",
    "decoder_scheduler/scheduler_config.json", "super_res_scheduler/scheduler_config.json",
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzModelDirectory(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let folder = FuzzFile.folder(name: "model")
    let parts = UnsafeBufferPointer(start: data, count: size).split(separator: 0, omittingEmptySubsequences: false)
    for (file, part) in zip(files, parts) where !part.isEmpty {
        let url = folder.appendingPathComponent(file)
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? Data(part).write(to: url)
    }
    FuzzLog.outcome("model directory") { _ = try UnCLIPPipeline(directory: folder) }
    return 0
}

@_cdecl("FuzzModelDirectory_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzModelDirectory)
}
