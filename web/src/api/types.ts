/** The public API's shapes, as docs/contract name them (the seed's field names). */

export interface Machine {
  machine_id: number;
  machine_name: string;
  tool_capacity: number;
}

export interface Axis {
  axis_id: number;
  machine: number;
  axis_name: string;
  max_acceleration: number;
  max_velocity: number;
}

export interface Tool {
  tool_id: number;
  machine: number;
  tool_offset: number;
  feedrate: number;
  update_timestamp: string;
}

export interface ToolUsage {
  usage_id: number;
  machine: number;
  tool_in_use: number;
  update_timestamp: string;
}

/** One axis sample: a raw `/data/axises/` row, or a downsampled `/api/axis-data/` bucket. */
export interface AxisSample {
  axis: number;
  machine_id: number;
  machine_name?: string;
  axis_name: string;
  actual_position: number;
  target_position: number;
  distance_to_go: number;
  homed: boolean;
  acceleration: number;
  velocity: number;
  update_timestamp: string;
}

export interface User {
  id: number;
  username: string;
  email: string;
  first_name: string;
  last_name: string;
  is_active: boolean;
  date_joined: string;
  last_login: string | null;
  groups: string[];
}

/** `GET /users/me/`: the signed-in user, with what their token may do. */
export interface Me extends User {
  scope: string;
  /** Permission codes (`machine.add`), narrowed by the token's scopes. */
  permissions: string[];
}

export interface Group {
  name: string;
  permissions: string[];
}

export interface Permission {
  code: string;
  description: string;
}

export interface OAuthClient {
  client_id: string;
  name: string;
  public: boolean;
  grant_types: string[];
  scopes: string[];
  created_at: string;
}

export interface TokenAnswer {
  access_token: string;
  expires_in: number;
  token_type: "Bearer";
  scope: string;
  refresh_token?: string;
}
