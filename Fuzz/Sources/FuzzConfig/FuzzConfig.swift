import Foundation
import FuzzSupport
import UnCLIPModels

/// A component's `config.json` as the loaders read it (`loadConfig`: strict decoding and each configuration's
/// whole-config validation), tried as every component's type, and `unclip_defaults.json`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let url = FuzzFile.write(data, size, name: "config.json")
    _ = try? loadConfig(CLIPTextConfig.self, from: url)
    _ = try? loadConfig(CLIPVisionConfig.self, from: url)
    _ = try? loadConfig(PriorTransformerConfig.self, from: url)
    _ = try? loadConfig(UnCLIPTextProjConfig.self, from: url)
    _ = try? loadConfig(UNet2DConditionConfig.self, from: url)
    _ = try? loadConfig(UNet2DConfig.self, from: url)
    _ = try? loadConfig(UnCLIPSchedulerConfig.self, from: url)
    _ = try? loadConfig(SamplingDefaults.self, from: url)
    return 0
}

@_cdecl("FuzzConfig_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzConfig)
}
