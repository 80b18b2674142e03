//! The QuantitativeTypes v1 extension (`dtmi:dtdl:extension:quantitativeTypes;1`):
//! semantic types, the unit type each one takes, and the units of each unit type.
//!
//! Key items: [`SEMANTIC_TYPES`], [`semantic_type`], [`is_unit`]. Transcribed from the
//! extension's specification table; DTDL v2 has the same semantic types built in.

/// A semantic type: its term, its unit type and the units allowed for it.
pub struct SemanticType {
    pub name: &'static str,
    pub unit_type: &'static str,
    pub units: &'static [&'static str],
}

/// Every semantic type of QuantitativeTypes v1.
pub const SEMANTIC_TYPES: &[SemanticType] = &[
    SemanticType {
        name: "Acceleration",
        unit_type: "AccelerationUnit",
        units: &[
            "centimetrePerSecondSquared",
            "gForce",
            "metrePerSecondSquared",
        ],
    },
    SemanticType {
        name: "Angle",
        unit_type: "AngleUnit",
        units: &[
            "degreeOfArc",
            "minuteOfArc",
            "radian",
            "secondOfArc",
            "turn",
        ],
    },
    SemanticType {
        name: "AngularAcceleration",
        unit_type: "AngularAccelerationUnit",
        units: &["radianPerSecondSquared"],
    },
    SemanticType {
        name: "AngularVelocity",
        unit_type: "AngularVelocityUnit",
        units: &[
            "degreePerSecond",
            "radianPerSecond",
            "revolutionPerMinute",
            "revolutionPerSecond",
        ],
    },
    SemanticType {
        name: "ApparentEnergy",
        unit_type: "ApparentEnergyUnit",
        units: &[
            "gigavoltAmpereHour",
            "kilovoltAmpereHour",
            "megavoltAmpereHour",
            "voltAmpereHour",
        ],
    },
    SemanticType {
        name: "ApparentPower",
        unit_type: "ApparentPowerUnit",
        units: &[
            "gigavoltAmpere",
            "kilovoltAmpere",
            "megavoltAmpere",
            "millivoltAmpere",
            "voltAmpere",
        ],
    },
    SemanticType {
        name: "Area",
        unit_type: "AreaUnit",
        units: &[
            "acre",
            "hectare",
            "squareCentimetre",
            "squareFoot",
            "squareInch",
            "squareKilometre",
            "squareMetre",
            "squareMillimetre",
        ],
    },
    SemanticType {
        name: "Capacitance",
        unit_type: "CapacitanceUnit",
        units: &[
            "farad",
            "microfarad",
            "millifarad",
            "nanofarad",
            "picofarad",
        ],
    },
    SemanticType {
        name: "Concentration",
        unit_type: "Unitless",
        units: &[
            "partsPerBillion",
            "partsPerMillion",
            "partsPerQuadrillion",
            "partsPerTrillion",
            "percent",
            "unity",
        ],
    },
    SemanticType {
        name: "Current",
        unit_type: "CurrentUnit",
        units: &["ampere", "kiloampere", "microampere", "milliampere"],
    },
    SemanticType {
        name: "DataRate",
        unit_type: "DataRateUnit",
        units: &[
            "bitPerSecond",
            "bytePerSecond",
            "exbibitPerSecond",
            "exbibytePerSecond",
            "gibibitPerSecond",
            "gibibytePerSecond",
            "kibibitPerSecond",
            "kibibytePerSecond",
            "mebibitPerSecond",
            "mebibytePerSecond",
            "tebibitPerSecond",
            "tebibytePerSecond",
            "yobibitPerSecond",
            "yobibytePerSecond",
            "zebibitPerSecond",
            "zebibytePerSecond",
        ],
    },
    SemanticType {
        name: "DataSize",
        unit_type: "DataSizeUnit",
        units: &[
            "bit", "byte", "exbibit", "exbibyte", "gibibit", "gibibyte", "kibibit", "kibibyte",
            "mebibit", "mebibyte", "tebibit", "tebibyte", "yobibit", "yobibyte", "zebibit",
            "zebibyte",
        ],
    },
    SemanticType {
        name: "Density",
        unit_type: "DensityUnit",
        units: &[
            "gramPerCubicMetre",
            "kilogramPerCubicMetre",
            "microgramPerCubicMetre",
            "milligramPerCubicMetre",
        ],
    },
    SemanticType {
        name: "Distance",
        unit_type: "LengthUnit",
        units: &[
            "astronomicalUnit",
            "centimetre",
            "foot",
            "inch",
            "kilometre",
            "metre",
            "micrometre",
            "mile",
            "millimetre",
            "nanometre",
            "nauticalMile",
        ],
    },
    SemanticType {
        name: "ElectricCharge",
        unit_type: "ChargeUnit",
        units: &["ampereHour", "coulomb", "milliampereHour"],
    },
    SemanticType {
        name: "Energy",
        unit_type: "EnergyUnit",
        units: &[
            "britishThermalUnit",
            "electronvolt",
            "gigajoule",
            "gigawattHour",
            "joule",
            "kiloBritishThermalUnit",
            "kilojoule",
            "kilowattHour",
            "megaelectronvolt",
            "megajoule",
            "megawattHour",
            "milliwattHour",
            "terawattHour",
            "wattHour",
        ],
    },
    SemanticType {
        name: "EnergyRate",
        unit_type: "PowerUnit",
        units: &[
            "britishThermalUnitPerHour",
            "gigajoulePerHour",
            "gigawatt",
            "horsepower",
            "joulePerHour",
            "joulePerSecond",
            "kiloBritishThermalUnitPerHour",
            "kilojoulePerHour",
            "kilojoulePerSecond",
            "kilowatt",
            "kilowattHourPerYear",
            "megajoulePerHour",
            "megawatt",
            "microwatt",
            "milliwatt",
            "tonOfRefrigeration",
            "watt",
        ],
    },
    SemanticType {
        name: "Force",
        unit_type: "ForceUnit",
        units: &["newton", "ounce", "pound", "ton"],
    },
    SemanticType {
        name: "Frequency",
        unit_type: "FrequencyUnit",
        units: &["gigahertz", "hertz", "kilohertz", "megahertz", "millihertz"],
    },
    SemanticType {
        name: "Humidity",
        unit_type: "DensityUnit",
        units: &[
            "gramPerCubicMetre",
            "kilogramPerCubicMetre",
            "microgramPerCubicMetre",
            "milligramPerCubicMetre",
        ],
    },
    SemanticType {
        name: "Illuminance",
        unit_type: "IlluminanceUnit",
        units: &["footcandle", "lux"],
    },
    SemanticType {
        name: "Inductance",
        unit_type: "InductanceUnit",
        units: &["henry", "microhenry", "millihenry"],
    },
    SemanticType {
        name: "IonizingRadiationDose",
        unit_type: "IonizingRadiationDoseUnit",
        units: &[
            "gray",
            "microgray",
            "microsievert",
            "milligray",
            "millisievert",
            "sievert",
        ],
    },
    SemanticType {
        name: "Irradiance",
        unit_type: "IrradianceUnit",
        units: &["wattPerSquareMetre"],
    },
    SemanticType {
        name: "Latitude",
        unit_type: "AngleUnit",
        units: &[
            "degreeOfArc",
            "minuteOfArc",
            "radian",
            "secondOfArc",
            "turn",
        ],
    },
    SemanticType {
        name: "Length",
        unit_type: "LengthUnit",
        units: &[
            "astronomicalUnit",
            "centimetre",
            "foot",
            "inch",
            "kilometre",
            "metre",
            "micrometre",
            "mile",
            "millimetre",
            "nanometre",
            "nauticalMile",
        ],
    },
    SemanticType {
        name: "Longitude",
        unit_type: "AngleUnit",
        units: &[
            "degreeOfArc",
            "minuteOfArc",
            "radian",
            "secondOfArc",
            "turn",
        ],
    },
    SemanticType {
        name: "Luminance",
        unit_type: "LuminanceUnit",
        units: &["candelaPerSquareMetre"],
    },
    SemanticType {
        name: "Luminosity",
        unit_type: "PowerUnit",
        units: &[
            "britishThermalUnitPerHour",
            "gigajoulePerHour",
            "gigawatt",
            "horsepower",
            "joulePerHour",
            "joulePerSecond",
            "kiloBritishThermalUnitPerHour",
            "kilojoulePerHour",
            "kilojoulePerSecond",
            "kilowatt",
            "kilowattHourPerYear",
            "megajoulePerHour",
            "megawatt",
            "microwatt",
            "milliwatt",
            "tonOfRefrigeration",
            "watt",
        ],
    },
    SemanticType {
        name: "LuminousFlux",
        unit_type: "LuminousFluxUnit",
        units: &["lumen"],
    },
    SemanticType {
        name: "LuminousIntensity",
        unit_type: "LuminousIntensityUnit",
        units: &["candela"],
    },
    SemanticType {
        name: "MagneticFlux",
        unit_type: "MagneticFluxUnit",
        units: &["maxwell", "weber"],
    },
    SemanticType {
        name: "MagneticInduction",
        unit_type: "MagneticInductionUnit",
        units: &["gauss", "tesla"],
    },
    SemanticType {
        name: "Mass",
        unit_type: "MassUnit",
        units: &[
            "gram",
            "kilogram",
            "massPound",
            "microgram",
            "milligram",
            "slug",
            "tonne",
        ],
    },
    SemanticType {
        name: "MassFlowRate",
        unit_type: "MassFlowRateUnit",
        units: &[
            "gramPerHour",
            "gramPerSecond",
            "kilogramPerHour",
            "kilogramPerSecond",
            "massPoundPerHour",
        ],
    },
    SemanticType {
        name: "Power",
        unit_type: "PowerUnit",
        units: &[
            "britishThermalUnitPerHour",
            "gigajoulePerHour",
            "gigawatt",
            "horsepower",
            "joulePerHour",
            "joulePerSecond",
            "kiloBritishThermalUnitPerHour",
            "kilojoulePerHour",
            "kilojoulePerSecond",
            "kilowatt",
            "kilowattHourPerYear",
            "megajoulePerHour",
            "megawatt",
            "microwatt",
            "milliwatt",
            "tonOfRefrigeration",
            "watt",
        ],
    },
    SemanticType {
        name: "Pressure",
        unit_type: "PressureUnit",
        units: &[
            "bar",
            "decapascal",
            "hectopascal",
            "inchesOfMercury",
            "inchesOfWater",
            "kilopascal",
            "millibar",
            "millimetresOfMercury",
            "pascal",
            "poundPerSquareInch",
        ],
    },
    SemanticType {
        name: "Radioactivity",
        unit_type: "RadioactivityUnit",
        units: &[
            "becquerel",
            "gigabecquerel",
            "kilobecquerel",
            "megabecquerel",
        ],
    },
    SemanticType {
        name: "ReactiveEnergy",
        unit_type: "ReactiveEnergyUnit",
        units: &[
            "gigavoltAmpereReactiveHour",
            "kilovoltAmpereReactiveHour",
            "megavoltAmpereReactiveHour",
            "voltAmpereReactiveHour",
        ],
    },
    SemanticType {
        name: "ReactivePower",
        unit_type: "ReactivePowerUnit",
        units: &[
            "gigavoltAmpereReactive",
            "kilovoltAmpereReactive",
            "megavoltAmpereReactive",
            "millivoltAmpereReactive",
            "voltAmpereReactive",
        ],
    },
    SemanticType {
        name: "RelativeDensity",
        unit_type: "Unitless",
        units: &[
            "partsPerBillion",
            "partsPerMillion",
            "partsPerQuadrillion",
            "partsPerTrillion",
            "percent",
            "unity",
        ],
    },
    SemanticType {
        name: "RelativeHumidity",
        unit_type: "Unitless",
        units: &[
            "partsPerBillion",
            "partsPerMillion",
            "partsPerQuadrillion",
            "partsPerTrillion",
            "percent",
            "unity",
        ],
    },
    SemanticType {
        name: "Resistance",
        unit_type: "ResistanceUnit",
        units: &["kiloohm", "megaohm", "milliohm", "ohm"],
    },
    SemanticType {
        name: "SoundPressure",
        unit_type: "SoundPressureUnit",
        units: &["bel", "decibel"],
    },
    SemanticType {
        name: "Temperature",
        unit_type: "TemperatureUnit",
        units: &["degreeCelsius", "degreeFahrenheit", "kelvin"],
    },
    SemanticType {
        name: "Thrust",
        unit_type: "ForceUnit",
        units: &["newton", "ounce", "pound", "ton"],
    },
    SemanticType {
        name: "TimeSpan",
        unit_type: "TimeUnit",
        units: &[
            "day",
            "hour",
            "microsecond",
            "millisecond",
            "minute",
            "nanosecond",
            "second",
            "year",
        ],
    },
    SemanticType {
        name: "Torque",
        unit_type: "TorqueUnit",
        units: &["newtonMetre"],
    },
    SemanticType {
        name: "Velocity",
        unit_type: "VelocityUnit",
        units: &[
            "centimetrePerSecond",
            "kilometrePerHour",
            "kilometrePerSecond",
            "knot",
            "metrePerHour",
            "metrePerSecond",
            "milePerHour",
            "milePerSecond",
        ],
    },
    SemanticType {
        name: "Voltage",
        unit_type: "VoltageUnit",
        units: &["kilovolt", "megavolt", "microvolt", "millivolt", "volt"],
    },
    SemanticType {
        name: "Volume",
        unit_type: "VolumeUnit",
        units: &[
            "cubicCentimetre",
            "cubicFoot",
            "cubicInch",
            "cubicMetre",
            "fluidOunce",
            "gallon",
            "litre",
            "millilitre",
        ],
    },
    SemanticType {
        name: "VolumeFlowRate",
        unit_type: "VolumeFlowRateUnit",
        units: &[
            "cubicFootPerMinute",
            "cubicMetrePerHour",
            "cubicMetrePerMinute",
            "cubicMetrePerSecond",
            "gallonPerHour",
            "gallonPerMinute",
            "litrePerHour",
            "litrePerMinute",
            "litrePerSecond",
            "millilitrePerHour",
            "millilitrePerMinute",
            "millilitrePerSecond",
        ],
    },
];

/// The semantic type named `term`, if there is one.
pub fn semantic_type(term: &str) -> Option<&'static SemanticType> {
    SEMANTIC_TYPES.iter().find(|s| s.name == term)
}

/// Whether `term` is a unit of any unit type.
pub fn is_unit(term: &str) -> bool {
    SEMANTIC_TYPES.iter().any(|s| s.units.contains(&term))
}

/// Whether `term` names a unit type (e.g. `TemperatureUnit`).
pub fn is_unit_type(term: &str) -> bool {
    SEMANTIC_TYPES.iter().any(|s| s.unit_type == term)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_takes_temperature_units() {
        let t = semantic_type("Temperature").expect("Temperature is a semantic type");
        assert_eq!(t.unit_type, "TemperatureUnit");
        assert!(t.units.contains(&"degreeCelsius"));
        assert!(is_unit("metrePerSecond"));
        assert!(!is_unit("Temperature"));
        assert!(is_unit_type("Unitless"));
    }
}
