import Testing
@testable import VitalsFHIR
