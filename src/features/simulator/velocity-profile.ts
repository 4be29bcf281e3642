/**
 * A trapezoidal velocity profile over a distance: accelerate at the limit, cruise, brake at the
 * limit, stopping exactly at the end. Closed form, so position, velocity and acceleration at any
 * instant are exact: velocity is the derivative of position by construction, and no sampling
 * rate or integration step can change the motion.
 */
export interface TrapezoidProfile {
  readonly distance: number;
  readonly peakVelocity: number;
  readonly acceleration: number;
  readonly accelerationTime: number;
  readonly cruiseTime: number;
  readonly duration: number;
}

export interface ProfilePoint {
  distance: number;
  velocity: number;
  acceleration: number;
}

export function planTrapezoid(
  distance: number,
  maxVelocity: number,
  maxAcceleration: number,
): TrapezoidProfile {
  if (!(distance >= 0) || !(maxVelocity > 0) || !(maxAcceleration > 0)) {
    throw new RangeError(
      `cannot plan a move of ${distance} at v ≤ ${maxVelocity}, a ≤ ${maxAcceleration}`,
    );
  }
  // Too short to reach cruise speed: a triangle whose peak the limits allow.
  const peakVelocity = Math.min(maxVelocity, Math.sqrt(distance * maxAcceleration));
  const accelerationTime = peakVelocity / maxAcceleration;
  const reachesLimit = peakVelocity === maxVelocity;
  const cruiseTime = reachesLimit
    ? Math.max(0, (distance - peakVelocity * accelerationTime) / peakVelocity)
    : 0;
  return {
    distance,
    peakVelocity,
    acceleration: maxAcceleration,
    accelerationTime,
    cruiseTime,
    duration: 2 * accelerationTime + cruiseTime,
  };
}

export function profileAt(profile: TrapezoidProfile, elapsed: number): ProfilePoint {
  const { peakVelocity: vp, acceleration: am, accelerationTime: ta, cruiseTime: tc } = profile;
  if (elapsed <= 0) return { distance: 0, velocity: 0, acceleration: 0 };
  if (elapsed >= profile.duration) {
    return { distance: profile.distance, velocity: 0, acceleration: 0 };
  }
  if (elapsed < ta) {
    return { distance: 0.5 * am * elapsed ** 2, velocity: am * elapsed, acceleration: am };
  }
  const accelerationDistance = 0.5 * am * ta ** 2;
  if (elapsed < ta + tc) {
    return {
      distance: accelerationDistance + vp * (elapsed - ta),
      velocity: vp,
      acceleration: 0,
    };
  }
  // Braking is written from the end, so the move lands on its distance without round-off drift.
  const remaining = profile.duration - elapsed;
  return {
    distance: profile.distance - 0.5 * am * remaining ** 2,
    velocity: am * remaining,
    acceleration: -am,
  };
}
