/** What an axis sample measures, in the seed's order: the one list history, live and rollups use. */
export const axisSampleFields = [
  "actual_position",
  "target_position",
  "distance_to_go",
  "homed",
  "acceleration",
  "velocity",
] as const;
export type AxisSampleField = (typeof axisSampleFields)[number];

/** The numeric ones: everything but `homed`. */
export const axisMeasurements = axisSampleFields.filter(
  (field): field is Exclude<AxisSampleField, "homed"> => field !== "homed",
);
