import Foundation
import FuzzSupport
import UnCLIPModels

/// The CLIP tokenizer: arbitrary bytes as a prompt (decoded as the CLI and the server decode text, invalid UTF-8
/// repaired), through the embedded model's vocabulary; then the same bytes split at the first NUL into a
/// `vocab.json` and a `merges.txt` that a tokenizer is loaded from (`CLIPTokenizer(directory:)`) and used.
let embedded: CLIPTokenizer? = {
    let here = URL(fileURLWithPath: #filePath)
    let tokenizer = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources/UnCLIPShapesModel/shapes-unclip/tokenizer")
    return try? CLIPTokenizer(directory: tokenizer)
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let prompt = String(decoding: bytes, as: UTF8.self)
    if let embedded {
        let ids = embedded.encode(prompt, maxLength: 77)
        precondition(ids.count <= 77)
    }
    let split = bytes.firstIndex(of: 0) ?? bytes.count
    let directory = FuzzFile.write(data, 0, name: "tokenizer").deletingLastPathComponent()
        .appendingPathComponent("unclip-fuzz-\(getpid())-tokenizer.d")
    try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    try? Data(bytes[..<split]).write(to: directory.appendingPathComponent("vocab.json"))
    try? Data(bytes[min(split + 1, bytes.count)...]).write(to: directory.appendingPathComponent("merges.txt"))
    if let tokenizer = try? CLIPTokenizer(directory: directory) { _ = tokenizer.encode("a red circle above a blue square", maxLength: 77) }
    return 0
}

@_cdecl("FuzzTokenizer_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzTokenizer)
}
