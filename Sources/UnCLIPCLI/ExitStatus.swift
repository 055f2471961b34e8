import ArgumentParser
import Foundation
import UnCLIPImage
import UnCLIPModels
import UnCLIPNN
import UnCLIPShapesWorld
import UnCLIPTraining

/// The exit statuses of every `unclip` command, after BSD's sysexits.h; the root command's `--help` states them and
/// docs/reliability.md lists the inputs that give each.
public enum ExitStatus: Int32, CaseIterable, Sendable {
    case success = 0
    /// The command ran and failed (a stage produced NaN, training diverged, an unexpected error).
    case failure = 1
    /// Ctrl-C stopped training after its checkpoint (128 + SIGINT, as shells report it).
    case interrupted = 130
    /// The command line is wrong: an unknown option, a value out of range, an output equal to an input.
    case usage = 64
    /// An input file is malformed: a config value no model can have, corrupt weights, a broken image.
    case dataError = 65
    /// An input file or folder does not exist or cannot be read.
    case noInput = 66
    /// An output file cannot be created: a missing or read-only folder, a directory, an empty name.
    case cannotCreate = 73
}

/// An input named on the command line that is absent (the file, and the option that named it).
enum InputFileError: Error, CustomStringConvertible {
    case missing(flag: String, path: String)

    var description: String {
        switch self {
        case let .missing(flag, path): return "\(flag): no such file: \(path)"
        }
    }
}

extension UnCLIPCommand {
    /// The exit status of a command that threw `error`.
    public static func exitStatus(for error: Error) -> ExitStatus {
        switch error {
        case let e as ImageError:
            switch e {
            case .missing, .io: return .noInput
            case .cannotCreate, .encodeFailed: return .cannotCreate
            case .unrecognizedFormat, .decodeFailed, .tooLarge, .invalidTensor: return .dataError
            }
        case let e as PipelineLoadError:
            if case .missing = e { return .noInput }
            if case .component(_, _, let underlying) = e { return exitStatus(for: underlying) == .noInput ? .noInput : .dataError }
            return .dataError
        case let e as CLIPTokenizerError:
            if case .missingFiles = e { return .noInput }
            return .dataError
        case let e as DatasetError:
            if case .notADirectory = e { return .noInput }
            return .dataError
        case let e as TrainingError:
            switch e {
            case .missingPrerequisite: return .noInput
            case .io: return .cannotCreate
            case .invalidConfiguration, .emptyDataset, .checkpointMismatch: return .dataError
            case .noUsableSamples, .nonFiniteLoss: return .failure
            }
        case is InputFileError: return .noInput
        case is ConfigurationFileError, is InvalidConfiguration, is UnsupportedConfiguration, is SafeTensorsError,
             is ModuleLoadingError, is SchedulerError, is NoiseReplayError, is DecodingError, is UnknownActivationError:
            return .dataError
        case let e as ShapesWorldError:
            if case .io = e { return .cannotCreate }
            return .usage  // a count or resolution the world cannot make
        case is PipelineArgumentError, is OutputConflict: return .usage
        case let e as ExitCode: return ExitStatus(rawValue: e.rawValue) ?? .failure
        default:
            // ArgumentParser's own: parse and validation errors (64), --help (0).
            return ExitStatus(rawValue: exitCode(for: error).rawValue) ?? .failure
        }
    }

    /// Prints `error` and exits with its status: parse and `validate()` errors as ArgumentParser does (with the
    /// subcommand's usage line), everything a `run()` throws with its message alone.
    static func exit(reporting error: Error) -> Never {
        let status = exitStatus(for: error)
        // Errors from parsing and `validate()` come wrapped by ArgumentParser (64 to it, and not a bare ValidationError).
        let fromParsing = exitCode(for: error) == .validationFailure && !(error is ValidationError)
        switch status {
        case .usage where fromParsing, .success, .interrupted:
            exit(withError: error)
        default:
            FileHandle.standardError.write(Data("Error: \(message(for: error))\n".utf8))
            Foundation.exit(status.rawValue)
        }
    }
}
