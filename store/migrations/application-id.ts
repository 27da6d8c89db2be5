/** SQLite's application_id for regen's databases: "RGN1" as a big-endian 32-bit integer. */
export const REGEN_APPLICATION_ID = 0x52474e31;
