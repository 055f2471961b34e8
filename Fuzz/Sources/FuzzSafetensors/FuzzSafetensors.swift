import Foundation
import FuzzSupport
import UnCLIPNN

/// A safetensors file as the loaders open it (`SafeTensorsFile(contentsOf:)`: the header's length, JSON, dtypes,
/// shapes and offsets validated on open), then every tensor read as Float32.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let url = FuzzFile.write(data, size, name: "model.safetensors")
    guard let file = try? SafeTensorsFile(contentsOf: url) else { return 0 }
    for name in file.names { _ = try? file.tensor(name) }
    return 0
}

// SwiftPM links an executable target's entry point as `<Module>_main`; it hands over to libFuzzer's driver.
@_cdecl("FuzzSafetensors_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzSafetensors)
}
