// swift-tools-version:6.1
import PackageDescription

// Targets follow the dependency direction: C shims → tensor engine → modules → models → pipeline → CLI.
// Every library builds in Swift 6 language mode (strict concurrency). No unsafe flags: release builds are plain -O,
// with the preconditions (shape checks, oneDNN status checks) compiled in; the tests run on a release build.
let librarySettings: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "swift-unclip",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "UnCLIPTensor", targets: ["UnCLIPTensor"]),
        .library(name: "UnCLIPNN", targets: ["UnCLIPNN"]),
        .library(name: "UnCLIPImage", targets: ["UnCLIPImage"]),
        .library(name: "UnCLIPModels", targets: ["UnCLIPModels"]),
        .library(name: "UnCLIPShapesWorld", targets: ["UnCLIPShapesWorld"]),
        .library(name: "UnCLIPTraining", targets: ["UnCLIPTraining"]),
        .library(name: "UnCLIPEvaluation", targets: ["UnCLIPEvaluation"]),
        .library(name: "UnCLIPShapesModel", targets: ["UnCLIPShapesModel"]),
        .library(name: "UnCLIPServer", targets: ["UnCLIPServer"]),
        // The commands as a library: the executable only calls `UnCLIPCommand.main()`; tests and the fuzz targets
        // parse argument lists with them.
        .library(name: "UnCLIPCLI", targets: ["UnCLIPCLI"]),
        .executable(name: "unclip", targets: ["unclip"]),
    ],
    dependencies: [
        // Pinned to a minor range or an exact version (docs/dependencies.md).
        .package(url: "https://github.com/apple/swift-argument-parser", .upToNextMinor(from: "1.8.2")),
        // The server (`unclip serve`): pinned to the versions of the package mirror (docs/serving.md).
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        // Hummingbird's own dependencies, named because the server uses their types (Channel, HTTPField).
        .package(url: "https://github.com/apple/swift-nio", .upToNextMinor(from: "2.101.2")),
        .package(url: "https://github.com/apple/swift-http-types", .upToNextMinor(from: "1.8.0")),
    ],
    targets: [
        // System libraries (Debian: libdnnl-dev, libpng-dev, libjpeg-dev, zlib1g-dev; libgomp comes with gcc).
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "COpenMP", path: "Sources/COpenMP"),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", providers: [.apt(["libjpeg-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),

        // libjpeg reports errors by longjmp, which must never cross Swift frames: a small C wrapper catches them.
        .target(name: "CJPEGDecode", dependencies: ["CJPEG"], linkerSettings: [.linkedLibrary("jpeg")]),

        .target(name: "UnCLIPTensor", dependencies: ["CDNNL", "COpenMP"],
                swiftSettings: librarySettings,
                linkerSettings: [.linkedLibrary(":libgomp.so.1", .when(platforms: [.linux]))]),
        .target(name: "UnCLIPNN", dependencies: ["UnCLIPTensor"], swiftSettings: librarySettings),
        .target(name: "UnCLIPImage", dependencies: ["UnCLIPTensor", "CPNG", "CJPEGDecode", "CZlib"], swiftSettings: librarySettings),
        .target(name: "UnCLIPModels", dependencies: ["UnCLIPTensor", "UnCLIPNN", "UnCLIPImage"], swiftSettings: librarySettings),
        // ShapesWorld (spec/shapesworld.md): scenes, renderer, caption grammar, its CLIP caption rewrites, parser and checker.
        .target(name: "UnCLIPShapesWorld", dependencies: ["UnCLIPTensor", "UnCLIPImage"], swiftSettings: librarySettings),
        .target(name: "UnCLIPTraining", dependencies: ["UnCLIPModels", "UnCLIPImage", "UnCLIPShapesWorld"], swiftSettings: librarySettings),
        .target(name: "UnCLIPEvaluation", dependencies: ["UnCLIPModels", "UnCLIPImage", "UnCLIPShapesWorld"], swiftSettings: librarySettings),
        // The ShapesWorld pipeline trained by this project (docs/training.md), shipped as a resource (fp16, 15 MB).
        .target(name: "UnCLIPShapesModel", resources: [.copy("shapes-unclip")]),
        // The OpenAI Images API over HTTP (Hummingbird 2) and its web page (Web/, plain HTML/CSS/JS, no build step).
        .target(name: "UnCLIPServer", dependencies: [
            "UnCLIPTensor", "UnCLIPModels", "UnCLIPImage",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ], resources: [.copy("Web")], swiftSettings: librarySettings),
        .target(name: "UnCLIPCLI", dependencies: [
            "UnCLIPTensor", "UnCLIPNN", "UnCLIPImage", "UnCLIPModels", "UnCLIPTraining", "UnCLIPEvaluation", "UnCLIPShapesModel",
            "UnCLIPShapesWorld",
            // `unclip serve`, with the trait on (the default); `--disable-default-traits` builds the CLI without
            // the server and its packages.
            .target(name: "UnCLIPServer", condition: .when(traits: ["Server"])),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "unclip", dependencies: ["UnCLIPCLI"]),

        .testTarget(name: "UnCLIPTensorTests", dependencies: ["UnCLIPTensor"], resources: [.copy("Fixtures")]),
        // These suites find their fixtures through #filePath, so a clean clone needs no bundle step.
        .testTarget(name: "UnCLIPNNTests", dependencies: ["UnCLIPNN"], exclude: ["Fixtures"]),
        .testTarget(name: "UnCLIPImageTests", dependencies: ["UnCLIPImage"], exclude: ["Fixtures"]),
        .testTarget(name: "UnCLIPModelsTests", dependencies: ["UnCLIPModels", "UnCLIPImage"], exclude: ["Fixtures"]),
        .testTarget(name: "UnCLIPShapesWorldTests", dependencies: ["UnCLIPShapesWorld", "UnCLIPImage", "UnCLIPTensor"]),
        .testTarget(name: "UnCLIPTrainingTests", dependencies: ["UnCLIPTraining", "UnCLIPShapesWorld"]),
        .testTarget(name: "UnCLIPEvaluationTests", dependencies: ["UnCLIPEvaluation", "UnCLIPShapesModel", "UnCLIPShapesWorld"], exclude: ["Fixtures"]),
        .testTarget(name: "UnCLIPCLITests", dependencies: ["UnCLIPCLI", "UnCLIPImage", "UnCLIPTraining"]),
        .testTarget(name: "UnCLIPServerTests", dependencies: [
            "UnCLIPServer", "UnCLIPModels", "UnCLIPImage", "UnCLIPShapesModel",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "UnCLIPShapesModelTests", dependencies: ["UnCLIPShapesModel", "UnCLIPEvaluation", "UnCLIPModels", "UnCLIPShapesWorld"], exclude: ["reference.png", "reference-512.png"]),
    ],
    swiftLanguageModes: [.v5]
)

package.traits = [
    .trait(name: "Server", description: "`unclip serve`: the OpenAI Images API on Hummingbird (the server's packages)."),
    .default(enabledTraits: ["Server"]),
]
