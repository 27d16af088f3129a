import { oneLine } from '../../domain/text.ts';

/** Characters of someone else's name that a subject shows at most. */
export const SUBJECT_NAME_MAX = 60;
/** Characters of someone else's name that a body line shows at most (names are validated to 100). */
const BODY_NAME_MAX = 100;

/** A name someone else chose, as a subject shows it. */
export const inSubject = (name: string) => oneLine(name, SUBJECT_NAME_MAX);
/** A name someone else chose, as a body line shows it. */
export const inBody = (name: string) => oneLine(name, BODY_NAME_MAX);
