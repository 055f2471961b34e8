import Foundation
import FuzzSupport
import UnCLIPServer

/// The bodies of the server's job routes, read as `unclip serve` reads them (`RequestReading.read`: the body limits,
/// JSON or streamed multipart parsing, every field's rules, PNG checks and decoding), without a model.
///
/// The input: a byte choosing the route, a byte choosing how the body is cut into chunks (as the network delivers it),
/// the `content-type` header up to the first newline, then the body. The oracle: every refusal is an `APIError` with
/// a 4xx status; any other error would have been a 500 for something the client sent.
var configuration = ServerConfiguration(filesDirectory: URL(fileURLWithPath: NSTemporaryDirectory()))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard bytes.count >= 2 else { return 0 }
    let routes = RequestReading.Route.allCases
    let route = routes[Int(bytes[0]) % routes.count]
    let chunkSize = bytes[1] == 0 ? Int.max : Int(bytes[1]) * 37
    let rest = bytes[2...]
    let newline = rest.firstIndex(of: UInt8(ascii: "\n")) ?? rest.startIndex
    let contentType = String(decoding: rest[rest.startIndex..<newline], as: UTF8.self)
    let body = Array(rest[(newline == rest.endIndex ? newline : newline + 1)...])
    let chunks = stride(from: 0, to: body.count, by: min(chunkSize, max(body.count, 1))).map {
        Array(body[$0..<min($0 + chunkSize, body.count)])
    }
    let outcome: (any Error)? = FuzzAsync.wait {
        do {
            try await RequestReading.read(route, chunks: chunks, contentType: contentType, configuration: configuration)
            return nil as (any Error)?
        } catch { return error }
    }
    if FuzzLog.verbose { print("\(route.rawValue): \(outcome.map { "\($0)" } ?? "accepted")") }
    if let error = outcome {
        guard let api = error as? APIError, (400..<500).contains(api.status.code) else {
            fatalError("\(route.rawValue): a client's body gave \(error), which the server answers with 500")
        }
    }
    return 0
}

@_cdecl("FuzzRequest_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzRequest)
}
