import JWTKit
import GRDB
import Hummingbird
import VitalsFHIR
