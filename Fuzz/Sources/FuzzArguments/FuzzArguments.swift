import Foundation
import FuzzSupport
import UnCLIPCLI

/// The CLI's argument parsing: the input, split at NUL bytes, is an argument list for `unclip`, parsed and
/// validated as `unclip` does before it runs anything (`UnCLIPCommand.parseAsRoot`: the parser, then each command's
/// `validate()`), and a refusal turned into its exit status and message as `main` prints it. Nothing is run.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzArguments(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let arguments = UnsafeBufferPointer(start: data, count: size).split(separator: 0, omittingEmptySubsequences: false)
        .map { String(decoding: $0, as: UTF8.self) }
    do { _ = try UnCLIPCommand.parseAsRoot(arguments) } catch {
        _ = UnCLIPCommand.exitStatus(for: error)
        _ = UnCLIPCommand.fullMessage(for: error)
    }
    return 0
}

@_cdecl("FuzzArguments_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzArguments)
}
