// swift-tools-version:6.1
// The fuzz targets of docs/reliability.md ("Fuzzing"): one libFuzzer executable per input format, each calling the
// code the CLI and the server call. A package of its own, so the project builds without libFuzzer; built by
// Scripts/fuzz.sh with `-sanitize=fuzzer,address`.
import PackageDescription

let package = Package(
    name: "swift-unclip-fuzz",
    dependencies: [.package(name: "swift-unclip", path: "..")],
    targets: [
        .target(name: "FuzzSupport"),
        .executableTarget(name: "FuzzSafetensors", dependencies: ["FuzzSupport", .product(name: "UnCLIPNN", package: "swift-unclip")]),
        .executableTarget(name: "FuzzImage", dependencies: ["FuzzSupport", .product(name: "UnCLIPImage", package: "swift-unclip")]),
        .executableTarget(name: "FuzzConfig", dependencies: ["FuzzSupport", .product(name: "UnCLIPModels", package: "swift-unclip")]),
        .executableTarget(name: "FuzzTokenizer", dependencies: ["FuzzSupport", .product(name: "UnCLIPModels", package: "swift-unclip")]),
        .executableTarget(name: "FuzzModelDirectory", dependencies: ["FuzzSupport", .product(name: "UnCLIPModels", package: "swift-unclip")]),
        .executableTarget(name: "FuzzCheckpoint", dependencies: [
            "FuzzSupport", .product(name: "UnCLIPModels", package: "swift-unclip"),
            .product(name: "UnCLIPNN", package: "swift-unclip"), .product(name: "UnCLIPTraining", package: "swift-unclip"),
        ]),
        .executableTarget(name: "FuzzRequest", dependencies: ["FuzzSupport", .product(name: "UnCLIPServer", package: "swift-unclip")]),
        .executableTarget(name: "FuzzArguments", dependencies: ["FuzzSupport", .product(name: "UnCLIPCLI", package: "swift-unclip")]),
    ],
    swiftLanguageModes: [.v5]
)
