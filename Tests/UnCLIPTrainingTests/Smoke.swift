import XCTest
@testable import UnCLIPTraining

final class UnCLIPTrainingSmokeTests: XCTestCase {
    func testBuilds() {}
}
