import Foundation
import FuzzSupport
import UnCLIPImage

/// PNG and JPEG bytes as every command and the server read them: `RGBImage(data:)` (libpng's simplified API and
/// libjpeg-turbo through the project's wrappers, the dimension limit checked on the header) and `AlphaImage(data:)`
/// (the edits' alpha).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    if let image = try? RGBImage(data: bytes) { precondition(image.pixels.count == image.width * image.height * 3) }
    if let image = try? AlphaImage(data: bytes), let alpha = image.alpha { precondition(alpha.count == image.image.width * image.image.height) }
    return 0
}

@_cdecl("FuzzImage_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzImage)
}
